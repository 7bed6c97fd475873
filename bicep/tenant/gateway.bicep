// Phase "gateway": the tenant's only public entry point.
//
// A Standard public IP with a DNS label, a WAF policy in Prevention mode with the OWASP 3.2
// managed rule set, and an Application Gateway WAF_v2 with one HTTPS listener per party port,
// each routed to a backend pool holding that party's private IP. There is no plain-HTTP
// listener: every listener serves the tenant's certificate, read from Key Vault
// (keyVaultSecretId, versionless so renewals are picked up) by the user-assigned identity the
// spec names, under the strict TLS 1.2+ predefined policy. One health probe (HTTP GET / on the
// backend) is attached to the backend settings every rule uses.

targetScope = 'resourceGroup'

@description('Azure region of every resource in this module.')
param location string

@description('Name of the Application Gateway.')
param gatewayName string

@description('Name of the gateway\'s public IP.')
param publicIpName string

@description('DNS label of the public IP (<label>.<region>.cloudapp.azure.com).')
param dnsLabel string

@description('Name of the WAF policy.')
param wafPolicyName string

@description('Versionless Key Vault secret URL of the TLS certificate every listener serves (https://<vault>.vault.azure.net/secrets/<name>).')
param tlsCertificateUri string

@description('Resource id of the user-assigned identity the gateway reads the certificate with (it holds Key Vault Secrets User on that secret).')
param identityId string

@description('Name of the tenant\'s virtual network.')
param vnetName string

@description('Name of the Application Gateway subnet.')
param gatewaySubnetName string

@description('One entry per party: {name, port, ipAddress, priority} — the listener port on the gateway, the party VM\'s private IP, the routing rule\'s priority.')
@minLength(1)
param backends array

@description('Port the parties\' VMs serve HTTP on (the NSG admits it from the gateway subnet).')
param backendPort int

@description('Path the health probe requests on every backend.')
param probePath string

var gatewayId = resourceId('Microsoft.Network/applicationGateways', gatewayName)
var frontendIpName = 'public-frontend'
var backendSettingsName = 'backend-http'
var probeName = 'health'
var certificateName = 'tenant-tls'

resource wafPolicy 'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies@2024-05-01' = {
  name: wafPolicyName
  location: location
  properties: {
    policySettings: {
      state: 'Enabled'
      mode: 'Prevention'
      requestBodyCheck: true
      maxRequestBodySizeInKb: 128
      fileUploadLimitInMb: 100
    }
    managedRules: {
      managedRuleSets: [
        {
          ruleSetType: 'OWASP'
          ruleSetVersion: '3.2'
        }
      ]
    }
  }
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = {
  name: publicIpName
  location: location
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
    dnsSettings: {
      domainNameLabel: dnsLabel
    }
  }
}

resource appGateway 'Microsoft.Network/applicationGateways@2024-05-01' = {
  name: gatewayName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    sku: {
      name: 'WAF_v2'
      tier: 'WAF_v2'
    }
    autoscaleConfiguration: {
      minCapacity: 0
      maxCapacity: 2
    }
    enableHttp2: true
    firewallPolicy: {
      id: wafPolicy.id
    }
    sslPolicy: {
      policyType: 'Predefined'
      policyName: 'AppGwSslPolicy20220101S'
    }
    sslCertificates: [
      {
        name: certificateName
        properties: {
          keyVaultSecretId: tlsCertificateUri
        }
      }
    ]
    gatewayIPConfigurations: [
      {
        name: 'gateway-ip'
        properties: {
          subnet: {
            id: resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, gatewaySubnetName)
          }
        }
      }
    ]
    frontendIPConfigurations: [
      {
        name: frontendIpName
        properties: {
          publicIPAddress: {
            id: publicIp.id
          }
        }
      }
    ]
    frontendPorts: [for backend in backends: {
      name: 'port-${backend.name}'
      properties: {
        port: backend.port
      }
    }]
    backendAddressPools: [for backend in backends: {
      name: 'pool-${backend.name}'
      properties: {
        backendAddresses: [
          {
            ipAddress: backend.ipAddress
          }
        ]
      }
    }]
    probes: [
      {
        name: probeName
        properties: {
          protocol: 'Http'
          host: '127.0.0.1'
          path: probePath
          interval: 30
          timeout: 30
          unhealthyThreshold: 3
          pickHostNameFromBackendHttpSettings: false
          match: {
            statusCodes: [
              '200-399'
            ]
          }
        }
      }
    ]
    backendHttpSettingsCollection: [
      {
        name: backendSettingsName
        properties: {
          port: backendPort
          protocol: 'Http'
          cookieBasedAffinity: 'Disabled'
          requestTimeout: 30
          pickHostNameFromBackendAddress: false
          probe: {
            id: '${gatewayId}/probes/${probeName}'
          }
        }
      }
    ]
    httpListeners: [for backend in backends: {
      name: 'listener-${backend.name}'
      properties: {
        protocol: 'Https'
        frontendIPConfiguration: {
          id: '${gatewayId}/frontendIPConfigurations/${frontendIpName}'
        }
        frontendPort: {
          id: '${gatewayId}/frontendPorts/port-${backend.name}'
        }
        sslCertificate: {
          id: '${gatewayId}/sslCertificates/${certificateName}'
        }
        requireServerNameIndication: false
      }
    }]
    requestRoutingRules: [for backend in backends: {
      name: 'rule-${backend.name}'
      properties: {
        ruleType: 'Basic'
        priority: backend.priority
        httpListener: {
          id: '${gatewayId}/httpListeners/listener-${backend.name}'
        }
        backendAddressPool: {
          id: '${gatewayId}/backendAddressPools/pool-${backend.name}'
        }
        backendHttpSettings: {
          id: '${gatewayId}/backendHttpSettingsCollection/${backendSettingsName}'
        }
      }
    }]
  }
}

output gatewayId string = appGateway.id
output publicIpAddress string = publicIp.properties.ipAddress
output fqdn string = publicIp.properties.dnsSettings.fqdn
