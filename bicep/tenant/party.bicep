// Phase "party" (one deployment per party): the party's user-assigned identity, its Key Vault
// Premium, the confidential disk-encryption key with the default CVM release policy and the
// Disk Encryption Set of type ConfidentialVmEncryptedWithCustomerKey.
//
// Role assignments made here, each at the narrowest scope that works:
// - the DES identity: Key Vault Crypto Service Encryption User on the disk key only;
// - the platform's "Confidential VM Orchestrator" principal: Key Vault Crypto Service Release
//   User on the disk key only;
// - the control plane's operator principal: the "cotenant Key Operator" custom role on this
//   vault (defined in bicep/control-plane/main.bicep), so it can create and rotate the party's
//   app key and set its release policy through the Key Vault data plane (ARM cannot set an app
//   key's custom release policy and rotate it the way the control plane needs). Unlike Key Vault
//   Crypto Officer, that role cannot release, decrypt, unwrap, sign, import or back up a key: the
//   operator manages every party's key but can use none of them.
// The app key's release grants are made later, per key, by grants.bicep.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Name of the party\'s user-assigned managed identity (its CVM runs as it).')
param identityName string

@description('Name of the party\'s Key Vault (globally unique, 3-24 characters).')
@minLength(3)
@maxLength(24)
param vaultName string

@description('Name of the confidential disk-encryption key in the vault.')
param diskKeyName string

@description('Name of the Disk Encryption Set for the CVM\'s OS disk.')
param desName string

@description('Release policy of the disk key (JSON document): Azure\'s default CVM policy shape, which the platform satisfies when it starts the CVM.')
param diskKeyReleasePolicy object

@description('Name of the tenant\'s virtual network (from the network phase).')
param vnetName string

@description('Name of the VM subnet; the vault admits it through its service endpoint.')
param vmSubnetName string

@description('Public IPv4 addresses or CIDR ranges admitted by the vault firewall besides the VM subnet: the control plane\'s egress address(es).')
param allowedIpRanges array

@description('Object id of the control plane\'s principal; it gets the key operator role on this vault.')
param operatorPrincipalId string

@description('GUID of the control plane\'s "cotenant Key Operator" custom role (manages keys, never releases or uses them).')
param operatorRoleDefinitionId string

@description('Principal type of operatorPrincipalId.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param operatorPrincipalType string

@description('Object id, in this Entra tenant, of the "Confidential VM Orchestrator" service principal (app id bf7b6499-ff71-4aa2-97a4-f372087be7f0).')
param cvmOrchestratorObjectId string

var roles = loadJsonContent('roles.json')

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'premium'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: [for ipRange in allowedIpRanges: {
        value: ipRange
      }]
      // The party phase runs in parallel with the network phase: the rule may be written
      // before the subnet's Microsoft.KeyVault service endpoint exists, and applies once it does.
      virtualNetworkRules: [
        {
          id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, vmSubnetName)
          ignoreMissingVnetServiceEndpoint: true
        }
      ]
    }
  }
}

resource diskKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: diskKeyName
  properties: {
    kty: 'RSA-HSM'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
      exportable: true
    }
    release_policy: {
      contentType: 'application/json; charset=utf-8'
      data: base64(string(diskKeyReleasePolicy))
    }
  }
}

resource des 'Microsoft.Compute/diskEncryptionSets@2024-03-02' = {
  name: desName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    encryptionType: 'ConfidentialVmEncryptedWithCustomerKey'
    rotationToLatestKeyVersionEnabled: false
    activeKey: {
      sourceVault: {
        id: vault.id
      }
      keyUrl: diskKey.properties.keyUriWithVersion
    }
  }
}

resource desKeyAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(diskKey.id, des.id, roles.keyVaultCryptoServiceEncryptionUser)
  scope: diskKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoServiceEncryptionUser)
    principalId: des.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource orchestratorKeyRelease 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(diskKey.id, cvmOrchestratorObjectId, roles.keyVaultCryptoServiceReleaseUser)
  scope: diskKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoServiceReleaseUser)
    principalId: cvmOrchestratorObjectId
    principalType: 'ServicePrincipal'
  }
}

resource operatorKeyOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, operatorPrincipalId, operatorRoleDefinitionId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', operatorRoleDefinitionId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output identityId string = identity.id
output identityName string = identity.name
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output vaultId string = vault.id
output vaultName string = vault.name
output vaultUri string = vault.properties.vaultUri
output diskKeyId string = diskKey.id
output desId string = des.id
output desPrincipalId string = des.identity.principalId
