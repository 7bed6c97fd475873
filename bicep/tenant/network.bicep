// Phase "network": the tenant's VNet, its subnets, the NSG on the VM subnet and the NAT gateway
// that gives the CVMs their only outbound path (Azure is retiring default outbound access).
//
// The NSG holds exactly the reference deployment's inbound rules. Rule 120 (SSH from Bastion)
// and the AzureBastionSubnet exist only when `debug` is true.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Name of the virtual network.')
param vnetName string

@description('Name of the NSG attached to the VM subnet.')
param nsgName string

@description('Name of the NAT gateway that carries the VM subnet\'s outbound traffic.')
param natGatewayName string

@description('Name of the NAT gateway\'s public IP (the tenant\'s egress address).')
param natPublicIpName string

@description('Address space of the virtual network, e.g. 10.0.0.0/16.')
param vnetCidr string

@description('Name of the subnet that holds the CVMs.')
param vmSubnetName string

@description('Prefix of the VM subnet, e.g. 10.0.1.0/24.')
param vmSubnetPrefix string

@description('Name of the Application Gateway subnet.')
param gatewaySubnetName string

@description('Prefix of the Application Gateway subnet, e.g. 10.0.2.0/24.')
param gatewaySubnetPrefix string

@description('Prefix of the AzureBastionSubnet (created only when debug is true), e.g. 10.0.99.0/26.')
param bastionSubnetPrefix string

@description('Debug deployment: adds the AzureBastionSubnet and NSG rule 120 (SSH from Bastion).')
param debug bool

var alwaysRules = [
  {
    name: 'Allow-AppGw-HTTP'
    properties: {
      priority: 100
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: gatewaySubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: vmSubnetPrefix
      destinationPortRange: '80'
    }
  }
  {
    name: 'Allow-InterVM-HTTPS'
    properties: {
      priority: 110
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: vmSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: vmSubnetPrefix
      destinationPortRange: '443'
    }
  }
]

var debugRules = [
  {
    name: 'Allow-Bastion-SSH'
    properties: {
      priority: 120
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: bastionSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: vmSubnetPrefix
      destinationPortRange: '22'
    }
  }
]

var denyRules = [
  {
    name: 'Deny-All-Other-Inbound'
    properties: {
      priority: 4000
      direction: 'Inbound'
      access: 'Deny'
      protocol: '*'
      sourceAddressPrefix: 'VirtualNetwork'
      sourcePortRange: '*'
      destinationAddressPrefix: 'VirtualNetwork'
      destinationPortRange: '*'
    }
  }
]

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: nsgName
  location: location
  properties: {
    securityRules: concat(alwaysRules, debug ? debugRules : [], denyRules)
  }
}

resource natPublicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: natPublicIpName
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

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = {
  name: natGatewayName
  location: location
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: natPublicIp.id
      }
    ]
  }
}

var vmSubnet = {
  name: vmSubnetName
  properties: {
    addressPrefix: vmSubnetPrefix
    defaultOutboundAccess: false
    networkSecurityGroup: {
      id: nsg.id
    }
    natGateway: {
      id: natGateway.id
    }
    // The parties' Key Vaults and data storage accounts admit the VM subnet through service
    // endpoints (network ACLs); a storage account's virtual network rule needs the endpoint.
    serviceEndpoints: [
      {
        service: 'Microsoft.KeyVault'
      }
      {
        service: 'Microsoft.Storage'
      }
    ]
  }
}

// No NSG and no outbound restriction here: Application Gateway v2 manages its own subnet
// (infrastructure ports 65200-65535) and reaches the Internet through its own public IP.
var gatewaySubnet = {
  name: gatewaySubnetName
  properties: {
    addressPrefix: gatewaySubnetPrefix
  }
}

var bastionSubnet = {
  name: 'AzureBastionSubnet'
  properties: {
    addressPrefix: bastionSubnetPrefix
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetCidr
      ]
    }
    subnets: concat([vmSubnet, gatewaySubnet], debug ? [bastionSubnet] : [])
  }
}

output vnetId string = vnet.id
output vmSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, vmSubnetName)
output gatewaySubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, gatewaySubnetName)
output nsgId string = nsg.id
output natGatewayId string = natGateway.id
output egressIpAddress string = natPublicIp.properties.ipAddress
