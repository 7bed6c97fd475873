// Phase "grants" (one deployment per key): who may release ONE key.
//
// Each principal listed gets "Key Vault Crypto Service Release User" scoped to that single key,
// never to the vault: the role carries only the release data action, so Key Vault performs no
// decrypt, unwrap or sign operation for these identities, and the key's release policy (an
// attested CVM) still has to be satisfied on every release. The key itself (the party's app key,
// `<party>-secret-key`) is created through the Key Vault data plane before this phase runs.

targetScope = 'resourceGroup'

@description('Name of the Key Vault that holds the key.')
param vaultName string

@description('Name of the key the grants apply to.')
param keyName string

@description('Object ids of the managed identities allowed to release the key (the access matrix\'s column for this key).')
@minLength(1)
param principalIds array

var roles = loadJsonContent('roles.json')

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource key 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: keyName
}

resource releaseGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in principalIds: {
  name: guid(key.id, principalId, roles.keyVaultCryptoServiceReleaseUser)
  scope: key
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoServiceReleaseUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

output keyId string = key.id
output roleAssignmentIds array = [for (principalId, index) in principalIds: releaseGrants[index].id]
