// The control plane's own infrastructure, deployed with the Azure Developer CLI (`azd up`).
//
// Subscription scope, because the control plane creates one resource group per tenant at run
// time and must deploy into it: this file makes the control plane's resource group (everything
// in resources.bicep) and the control plane identity's two subscription-level grants:
// - "cotenant tenant deployer", a custom role with exactly the management actions the tenant
//   modules (bicep/tenant/*.bicep) need, plus resource-group create/delete;
// - "Role Based Access Control Administrator", constrained by an ABAC condition to assigning and
//   removing only the Key Vault, queue and blob roles the tenant phases grant, only to service
//   principals (managed identities); to itself it can assign only "cotenant Key Operator"
//   (below), never release or any other role. It can never grant Owner or Contributor.
// It also defines "cotenant Key Operator", the custom role the party module gives the control
// plane on each tenant vault: it manages the app keys (create, rotate, release policy, rotation
// policy) but has no release, decrypt, unwrap, sign, import or backup data action.
// README.md ("Control plane identity and its permissions") explains why.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every control-plane resource.')
param environmentName string

@minLength(1)
@description('Azure region of the control plane (a region offering Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id, in this Entra tenant, of the "Confidential VM Orchestrator" service principal (app id bf7b6499-ff71-4aa2-97a4-f372087be7f0); the tenant phases grant it release of each disk key.')
param cvmOrchestratorObjectId string

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var roles = loadJsonContent('roles.json')

// The key operator role's GUID, known before deployment (the control plane reads it from its
// COTENANT_OPERATOR_ROLE_DEFINITION_ID app setting and passes it to each party deployment).
var keyOperatorRoleId = guid(subscription().id, 'cotenant-key-operator', environmentName)

// Roles the control plane grants to tenant principals other than itself (DES and platform
// disk-key grants, per-key release grants, guest queue grants, container-scoped read and
// publish grants on the parties' data containers).
var tenantGrantRoles = [
  roles.keyVaultCryptoServiceEncryptionUser
  roles.keyVaultCryptoServiceReleaseUser
  roles.storageQueueDataMessageSender
  roles.storageQueueDataMessageProcessor
  roles.storageBlobDataReader
  roles.storageBlobDataContributor
]
// Roles the control plane may assign (and remove) in tenant resource groups.
var delegableRoles = concat([keyOperatorRoleId], tenantGrantRoles)
var delegableList = join(delegableRoles, ', ')
var tenantGrantList = join(tenantGrantRoles, ', ')
// Write, to service principals only: a tenant grant role to anyone but the control plane
// itself, or the key operator role (no release, decrypt, unwrap or sign) to the control plane
// itself and nobody else (the party module gives it that role on each new vault).
// Delete: only assignments of a delegable role.
var selfId = controlPlane.outputs.identityPrincipalId
var delegationCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'} AND ((@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${tenantGrantList}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {${selfId}}) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${keyOperatorRoleId}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAnyValues:GuidEquals {${selfId}})))) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${delegableList}}))'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-cotenant-${environmentName}'
  location: location
  tags: tags
}

module controlPlane 'resources.bicep' = {
  name: 'cotenant-control-plane'
  scope: rg
  params: {
    location: location
    token: token
    tags: tags
    cvmOrchestratorObjectId: cvmOrchestratorObjectId
    keyOperatorRoleId: keyOperatorRoleId
  }
}

// Manages tenant app keys without being able to use them. Data actions are the exact Key Vault
// ones (no wildcard): read, create, update (incl. the release policy), rotate, delete and
// recover (soft delete + purge protection), the public-key operations encrypt and wrap, and the
// rotation policy. Deliberately absent: release, decrypt, unwrap, sign, import, backup,
// restore, purge. cotenant/plan.py KEY_OPERATOR_DATA_ACTIONS mirrors this list (the lab
// enforces it; tests/bicep/test_control_plane.py keeps the two equal).
resource keyOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: keyOperatorRoleId
  properties: {
    roleName: 'cotenant Key Operator (${environmentName})'
    description: 'Creates, rotates and sets policies of cotenant tenant app keys. Cannot release, decrypt, unwrap, sign, import or back up a key.'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keys/create/action'
          'Microsoft.KeyVault/vaults/keys/update/action'
          'Microsoft.KeyVault/vaults/keys/rotate/action'
          'Microsoft.KeyVault/vaults/keys/delete'
          'Microsoft.KeyVault/vaults/keys/recover/action'
          'Microsoft.KeyVault/vaults/keys/encrypt/action'
          'Microsoft.KeyVault/vaults/keys/wrap/action'
          'Microsoft.KeyVault/vaults/keyrotationpolicies/read'
          'Microsoft.KeyVault/vaults/keyrotationpolicies/write'
        ]
        notDataActions: []
      }
    ]
  }
}

resource tenantDeployer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'cotenant-tenant-deployer', environmentName)
  properties: {
    roleName: 'cotenant tenant deployer (${environmentName})'
    description: 'Creates, deploys and deletes cotenant tenant resource groups: network, Key Vault, identities, disk encryption sets, confidential VMs, data storage accounts, Application Gateway, Bastion. No data-plane access.'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/subscriptions/resourceGroups/read'
          'Microsoft.Resources/subscriptions/resourceGroups/write'
          'Microsoft.Resources/subscriptions/resourceGroups/delete'
          'Microsoft.Resources/deployments/*'
          'Microsoft.Network/virtualNetworks/*'
          'Microsoft.Network/networkSecurityGroups/*'
          'Microsoft.Network/natGateways/*'
          'Microsoft.Network/publicIPAddresses/*'
          'Microsoft.Network/networkInterfaces/*'
          'Microsoft.Network/applicationGateways/*'
          'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/*'
          'Microsoft.Network/bastionHosts/*'
          'Microsoft.Network/locations/*/read'
          'Microsoft.Compute/virtualMachines/*'
          'Microsoft.Compute/disks/*'
          'Microsoft.Compute/diskEncryptionSets/*'
          'Microsoft.Compute/locations/*/read'
          'Microsoft.KeyVault/vaults/*'
          'Microsoft.KeyVault/locations/deletedVaults/read'
          'Microsoft.KeyVault/locations/deletedVaults/purge/action'
          'Microsoft.KeyVault/locations/operationResults/read'
          'Microsoft.ManagedIdentity/userAssignedIdentities/*'
          'Microsoft.Storage/storageAccounts/*'
          'Microsoft.Authorization/roleAssignments/read'
        ]
        // the parties' data accounts are Entra-only: no account keys or SAS for the deployer
        notActions: [
          'Microsoft.Storage/storageAccounts/listKeys/action'
          'Microsoft.Storage/storageAccounts/regeneratekey/action'
          'Microsoft.Storage/storageAccounts/ListAccountSas/action'
          'Microsoft.Storage/storageAccounts/ListServiceSas/action'
        ]
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource deployerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, tenantDeployer.id, 'cotenant-control-plane', environmentName)
  properties: {
    roleDefinitionId: tenantDeployer.id
    principalId: controlPlane.outputs.identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'cotenant control plane: deploys tenant resource groups.'
  }
}

resource delegatedGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, roles.roleBasedAccessControlAdministrator, 'cotenant-control-plane', environmentName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.roleBasedAccessControlAdministrator)
    principalId: controlPlane.outputs.identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'cotenant control plane: key-scoped release grants and DES grants in tenant resource groups only.'
    condition: delegationCondition
    conditionVersion: '2.0'
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = controlPlane.outputs.functionAppName
output COTENANT_CONTROL_PLANE_PRINCIPAL_ID string = controlPlane.outputs.identityPrincipalId
output COTENANT_OPERATOR_ROLE_DEFINITION_ID string = keyOperator.name
output COTENANT_EGRESS_IP string = controlPlane.outputs.egressIpAddress
output COTENANT_STORAGE_ACCOUNT string = controlPlane.outputs.storageAccountName
