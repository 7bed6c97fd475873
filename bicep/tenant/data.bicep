// Phase "data" (one deployment per party): the party's own storage account for its sealed data
// file (`<party>-data.csv.sealed` in the private container `<party>-data`).
//
// The data is sealed before it is uploaded (envelope encryption under the party's key, which
// only an attested CVM can release), so this account protects availability and who can read the
// ciphertext, never the plaintext. Still, access is identity-only and least privilege:
// - no shared keys, SAS or anonymous access: Entra ID (RBAC) only, TLS 1.2+, HTTPS only, copies
//   only from accounts in the same Entra tenant;
// - firewall default Deny: only the tenant's VM subnet (service endpoint Microsoft.Storage, made
//   by the network phase) and the owner's listed public IPv4 ranges (where it uploads from);
// - role assignments at CONTAINER scope, never on the account: "Storage Blob Data Reader" for
//   the CVM identities of the parties allowed to release this party's key (the access matrix,
//   the owner excluded), "Storage Blob Data Contributor" for the owner's uploaders (the service
//   principals of the pipelines that publish the sealed file: the control plane may grant
//   tenant roles to service principals only, never to people — see bicep/control-plane/main.bicep).
// Blob soft delete, container soft delete and versioning keep an overwritten or deleted sealed
// file recoverable for 7 days; a lifecycle rule deletes the versions of earlier uploads 30 days
// after they were replaced, so an owner's withdrawn data does not stay in its account forever.
//
// Replication: Standard_LRS. The file is reproducible (the owner keeps the plaintext and can
// seal and publish it again), the single CVM that reads it is itself zonal, and LRS is offered
// in every region a tenant can use and keeps the (sealed) data in that region; ZRS or geo
// replication would add cost without making the analytics more available.

targetScope = 'resourceGroup'

@description('Azure region of the storage account.')
param location string

@description('Name of the storage account (globally unique, 3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Name of the private blob container that holds the sealed data file.')
@minLength(3)
@maxLength(63)
param containerName string

@description('Name of the tenant\'s virtual network (from the network phase).')
param vnetName string

@description('Name of the VM subnet; the account admits it through its Microsoft.Storage service endpoint.')
param vmSubnetName string

@description('Public IPv4 addresses or CIDR ranges (/30 or larger) admitted besides the VM subnet: where the owner uploads from.')
param allowedIpRanges array

@description('Object ids of the CVM identities that may read the container (the parties allowed to release this party\'s key, the owner excluded).')
param readerPrincipalIds array

@description('Object ids of the service principals (the owner\'s publishing pipelines or managed identities) that may publish the sealed file.')
param uploaderPrincipalIds array

var roles = loadJsonContent('roles.json')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowedCopyScope: 'AAD'
    isLocalUserEnabled: false
    isSftpEnabled: false
    isHnsEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: [for ipRange in allowedIpRanges: {
        action: 'Allow'
        value: ipRange
      }]
      virtualNetworkRules: [
        {
          action: 'Allow'
          id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, vmSubnetName)
        }
      ]
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-replaced-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

resource readers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in readerPrincipalIds: {
  name: guid(container.id, principalId, roles.storageBlobDataReader)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource uploaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in uploaderPrincipalIds: {
  name: guid(container.id, principalId, roles.storageBlobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

output storageAccountId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output containerName string = container.name
