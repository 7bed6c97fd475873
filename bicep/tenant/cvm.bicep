// Phase "cvm" (one deployment per party): the party's Confidential VM.
//
// - NIC with the party's static private IP and no public IP.
// - AMD SEV-SNP Confidential VM: security type ConfidentialVM, vTPM and secure boot on, OS disk
//   encrypted together with the VM guest state (DiskWithVMGuestState) under the party's
//   customer-managed key through its Disk Encryption Set; boot diagnostics off.
// - Runs as the party's user-assigned identity (the identity that holds its release grants).
// - Admin credentials arrive as secure parameters and are never output.
// - The Custom Script extension runs the guest agent bootstrap, passed in protectedSettings so
//   it is encrypted to the VM and never returned by ARM.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Name of the virtual machine resource.')
param vmName string

@description('Host name inside the VM.')
param computerName string

@description('Name of the VM\'s OS disk.')
param osDiskName string

@description('Name of the VM\'s network interface.')
param nicName string

@description('Confidential VM size (AMD SEV-SNP), e.g. Standard_DC2as_v5.')
param vmSize string

@description('Marketplace image of the CVM: {publisher, offer, sku, version}.')
param imageReference object

@description('Static private IPv4 address of the VM inside the VM subnet.')
param privateIpAddress string

@description('Name of the tenant\'s virtual network.')
param vnetName string

@description('Name of the VM subnet.')
param vmSubnetName string

@description('Name of the party\'s user-assigned identity (from the party phase).')
param identityName string

@description('Name of the party\'s Disk Encryption Set (from the party phase).')
param desName string

@description('Administrator user name (random per deployment).')
param adminUsername string

@description('How the administrator authenticates: a generated password or an SSH public key.')
@allowed([
  'password'
  'sshPublicKey'
])
param authenticationType string

@description('The administrator password or SSH public key (never output).')
@secure()
param adminPasswordOrKey string

@description('Shell script that installs and starts the guest agent (run once by the Custom Script extension; passed in protectedSettings).')
@secure()
param bootstrapScript string

@description('Files the Custom Script extension downloads next to the script before running it: the guest agent\'s bootstrap.sh and the systemd units of the agent and the analytics app (passed in protectedSettings; the script checks their SHA-256).')
param bootstrapFileUris array = []

var usesPassword = authenticationType == 'password'

var linuxConfiguration = {
  disablePasswordAuthentication: !usesPassword
  provisionVMAgent: true
  ssh: usesPassword ? null : {
    publicKeys: [
      {
        path: '/home/${adminUsername}/.ssh/authorized_keys'
        keyData: adminPasswordOrKey
      }
    ]
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource des 'Microsoft.Compute/diskEncryptionSets@2024-03-02' existing = {
  name: desName
}

resource nic 'Microsoft.Network/networkInterfaces@2024-05-01' = {
  name: nicName
  location: location
  properties: {
    enableIPForwarding: false
    ipConfigurations: [
      {
        name: 'ipconfig1'
        properties: {
          primary: true
          privateIPAddressVersion: 'IPv4'
          privateIPAllocationMethod: 'Static'
          privateIPAddress: privateIpAddress
          subnet: {
            id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, vmSubnetName)
          }
        }
      }
    ]
  }
}

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' = {
  name: vmName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    hardwareProfile: {
      vmSize: vmSize
    }
    securityProfile: {
      securityType: 'ConfidentialVM'
      uefiSettings: {
        secureBootEnabled: true
        vTpmEnabled: true
      }
    }
    storageProfile: {
      imageReference: imageReference
      osDisk: {
        name: osDiskName
        createOption: 'FromImage'
        caching: 'ReadWrite'
        deleteOption: 'Delete'
        managedDisk: {
          storageAccountType: 'Premium_LRS'
          securityProfile: {
            securityEncryptionType: 'DiskWithVMGuestState'
            diskEncryptionSet: {
              id: des.id
            }
          }
        }
      }
    }
    osProfile: {
      computerName: computerName
      adminUsername: adminUsername
      adminPassword: usesPassword ? adminPasswordOrKey : null
      linuxConfiguration: linuxConfiguration
      allowExtensionOperations: true
    }
    networkProfile: {
      networkInterfaces: [
        {
          id: nic.id
          properties: {
            primary: true
            deleteOption: 'Delete'
          }
        }
      ]
    }
    diagnosticsProfile: {
      bootDiagnostics: {
        enabled: false
      }
    }
  }
}

resource bootstrap 'Microsoft.Compute/virtualMachines/extensions@2024-07-01' = {
  parent: vm
  name: 'cotenant-bootstrap'
  location: location
  properties: {
    publisher: 'Microsoft.Azure.Extensions'
    type: 'CustomScript'
    typeHandlerVersion: '2.1'
    autoUpgradeMinorVersion: true
    protectedSettings: {
      script: base64(bootstrapScript)
      fileUris: bootstrapFileUris
    }
  }
}

output vmId string = vm.id
output vmName string = vm.name
output nicId string = nic.id
output privateIpAddress string = nic.properties.ipConfigurations[0].properties.privateIPAddress
output identityPrincipalId string = identity.properties.principalId
