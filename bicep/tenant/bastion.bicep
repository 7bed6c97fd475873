// Phase "bastion": debug deployments only. The orchestrator runs it only for a debug tenant
// and the resources exist only when `debug` is true, so a non-debug deployment of this module
// creates nothing. SSH reaches the CVMs through NSG rule 120, itself present only when debug.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Name of the Bastion host.')
param bastionName string

@description('Name of the Bastion\'s public IP.')
param publicIpName string

@description('Name of the tenant\'s virtual network (it holds the AzureBastionSubnet in debug mode).')
param vnetName string

@description('Must be true: Bastion exists only in debug deployments.')
param debug bool

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (debug) {
  name: publicIpName
  location: location
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource bastion 'Microsoft.Network/bastionHosts@2024-05-01' = if (debug) {
  name: bastionName
  location: location
  sku: {
    name: 'Basic'
  }
  properties: {
    ipConfigurations: [
      {
        name: 'bastion-ip'
        properties: {
          subnet: {
            id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, 'AzureBastionSubnet')
          }
          publicIPAddress: {
            id: publicIp.id
          }
        }
      }
    ]
  }
}

output bastionId string = debug ? bastion.id : ''
