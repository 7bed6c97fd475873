// Phase "guest-access" (one deployment per party), deployed into the CONTROL PLANE's resource
// group: the party's CVM identity may send to the `guest-reports` queue and process its own
// command queue, each grant scoped to that single queue — no other queue, no queue management,
// no blob or table access. Guest agents reach the control plane's storage only through these
// grants (shared-key access is disabled on that account).

targetScope = 'resourceGroup'

@description('Name of the control plane\'s storage account (holds the queues).')
param storageAccountName string

@description('Name of this party\'s command queue (created here if missing).')
@minLength(3)
@maxLength(63)
param commandQueueName string

@description('Principal id of the party\'s user-assigned identity (the identityPrincipalId output of its party deployment).')
param principalId string

var roles = loadJsonContent('roles.json')
var reportsQueueName = 'guest-reports'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource reportsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: reportsQueueName
}

resource commandQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: commandQueueName
}

resource sendReports 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(reportsQueue.id, principalId, roles.storageQueueDataMessageSender)
  scope: reportsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource processCommands 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(commandQueue.id, principalId, roles.storageQueueDataMessageProcessor)
  scope: commandQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageProcessor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output commandQueueId string = commandQueue.id
