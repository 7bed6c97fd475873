// The control plane's resources (deployed by main.bicep into its resource group).
//
// - A user-assigned identity: the function app runs as it, reaches its storage and telemetry
//   with it (no keys, no connection strings) and deploys tenants with it.
// - Storage with shared-key access disabled: Functions host, Durable task hub, deployment
//   package, the `guest-reports` queue; per-party command queues and the audit table are
//   created at run time by the app (Storage Queue/Table Data Contributor).
// - Application Insights (workspace-based) with local authentication disabled: telemetry is
//   accepted only with an Entra token of the app's identity (Monitoring Metrics Publisher).
// - A Flex Consumption plan (Python 3.11) whose app is integrated with a small VNet leaving
//   through a NAT gateway: the control plane has one static egress address, the only public
//   address the tenants' Key Vault firewalls admit besides their VM subnet.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Short unique token used in globally unique names.')
@minLength(5)
@maxLength(13)
param token string

@description('Tags applied to every resource.')
param tags object

@description('Object id of the "Confidential VM Orchestrator" service principal in this Entra tenant.')
param cvmOrchestratorObjectId string

@description('GUID of the "cotenant Key Operator" custom role (main.bicep); party deployments assign it to the control plane on each tenant vault.')
param keyOperatorRoleId string

var roles = loadJsonContent('roles.json')
var packageContainer = 'app-package'
var reportsQueue = 'guest-reports'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-cotenant-${token}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------- telemetry

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-cotenant-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-cotenant-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stcotenant${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
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

resource packageBlobContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainer
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource guestReports 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: reportsQueue
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'cotenantaudit'
}

// ---------------------------------------------------------------- egress

resource egressIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: 'pip-cotenant-${token}-egress'
  location: location
  tags: tags
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
  name: 'ng-cotenant-${token}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: egressIp.id
      }
    ]
  }
}

resource appNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-cotenant-${token}-app'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-cotenant-${token}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.250.0.0/24'
      ]
    }
    subnets: [
      {
        name: 'functions'
        properties: {
          addressPrefix: '10.250.0.0/26'
          defaultOutboundAccess: false
          networkSecurityGroup: {
            id: appNsg.id
          }
          natGateway: {
            id: natGateway.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
    ]
  }
}

// ---------------------------------------------------------------- function app

// Host storage through the identity: no AzureWebJobsStorage connection string exists anywhere.
// APPLICATIONINSIGHTS_CONNECTION_STRING only names the ingestion endpoint: with local auth
// disabled, telemetry needs the identity's Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
var appSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'AZURE_SUBSCRIPTION_ID'
    value: subscription().subscriptionId
  }
  {
    name: 'COTENANT_CLOUD'
    value: 'azure'
  }
  {
    name: 'COTENANT_QUEUE_URL'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    // where the guest-access module deploys (the queues' storage account and its group)
    name: 'COTENANT_STORAGE_ACCOUNT'
    value: storage.name
  }
  {
    name: 'COTENANT_CONTROL_PLANE_RESOURCE_GROUP'
    value: resourceGroup().name
  }
  {
    name: 'COTENANT_OPERATOR_PRINCIPAL_ID'
    value: identity.properties.principalId
  }
  {
    name: 'COTENANT_OPERATOR_PRINCIPAL_TYPE'
    value: 'ServicePrincipal'
  }
  {
    name: 'COTENANT_OPERATOR_ROLE_DEFINITION_ID'
    value: keyOperatorRoleId
  }
  {
    name: 'COTENANT_CVM_ORCHESTRATOR_OBJECT_ID'
    value: cvmOrchestratorObjectId
  }
  {
    name: 'COTENANT_ALLOWED_IP_RANGES'
    value: egressIp.properties.ipAddress
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-cotenant-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-cotenant-${token}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: '${vnet.id}/subnets/functions'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${packageContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    packageBlobContainer
  ]
}

// ---------------------------------------------------------------- the identity's own data access

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output functionAppName string = functionApp.name
output storageAccountName string = storage.name
output egressIpAddress string = egressIp.properties.ipAddress
