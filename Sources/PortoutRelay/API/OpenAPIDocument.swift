/// The OpenAPI 3.1 description of the relay's HTTP API, served at `GET /openapi.json` and printed by
/// `portout-relay openapi`. It lives in the source so that the executable serves it without files beside it.
enum OpenAPIDocument {
    static let text = #"""
{
  "openapi": "3.1.0",
  "info": {
    "title": "portout-relay",
    "version": "0.1.0",
    "description": "Webhook intake for carrier port-out events, a read API over the port outs the relay accepted, the carrier's write calls forwarded to its API, and health endpoints. Every error is an Error object."
  },
  "servers": [
    {
      "url": "/"
    }
  ],
  "paths": {
    "/webhooks/{tenant}": {
      "post": {
        "operationId": "receiveWebhook",
        "summary": "Receive one signed carrier event",
        "description": "Verifies the signature under the tenant's scheme, validates the event, dedupes it by (tenant, port out, status) and journals it with fdatasync before answering. The body is a CloudEvents envelope or a bare portOut object.",
        "parameters": [
          {
            "name": "tenant",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "project",
            "in": "query",
            "required": false,
            "description": "Project of a bare portOut object when the tenant has several.",
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "webhook-id",
            "in": "header",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "webhook-timestamp",
            "in": "header",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "webhook-signature",
            "in": "header",
            "required": false,
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "oneOf": [
                  {
                    "$ref": "#/components/schemas/Event"
                  },
                  {
                    "$ref": "#/components/schemas/PortOut"
                  }
                ]
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "Duplicate of an event already journaled.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Receipt"
                }
              }
            }
          },
          "202": {
            "description": "New event, journaled.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Receipt"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "409": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/projects/{project}/portOuts": {
      "get": {
        "operationId": "listPortOuts",
        "summary": "List a project's port outs, newest first",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "subscription",
            "in": "query",
            "required": false,
            "schema": {
              "type": "string",
              "minLength": 1
            }
          },
          {
            "name": "status",
            "in": "query",
            "required": false,
            "description": "Comma-separated statuses; default initiated,processing,issued.",
            "schema": {
              "type": "string",
              "pattern": "^(initiated|processing|issued|completed|expired|failed)(,(initiated|processing|issued|completed|expired|failed))*$"
            }
          },
          {
            "name": "after",
            "in": "query",
            "required": false,
            "description": "Id of a port out of the project; cannot be combined with before (422).",
            "schema": {
              "type": "string",
              "minLength": 1
            }
          },
          {
            "name": "before",
            "in": "query",
            "required": false,
            "description": "Id of a port out of the project; cannot be combined with after (422).",
            "schema": {
              "type": "string",
              "minLength": 1
            }
          },
          {
            "name": "limit",
            "in": "query",
            "required": false,
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 200,
              "default": 10
            }
          }
        ],
        "responses": {
          "200": {
            "description": "A page of port outs.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOutList"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          }
        }
      },
      "post": {
        "operationId": "createPortOut",
        "summary": "Create a port out (forwarded)",
        "description": "Creates a port out at the carrier. Forwarded to the tenant's upstream carrier API with the relay's key; the carrier's status and body come back unchanged. 501 without an upstream, 502 when it does not answer.",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "type": "object",
                "required": [
                  "subscription"
                ],
                "additionalProperties": false,
                "properties": {
                  "subscription": {
                    "type": "string",
                    "minLength": 1
                  },
                  "behavior": {
                    "enum": [
                      "cancelOnly",
                      "portOut"
                    ]
                  }
                }
              }
            }
          }
        },
        "responses": {
          "201": {
            "description": "The created port out.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOut"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "415": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          },
          "501": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/projects/{project}/portOuts/{portOut}": {
      "get": {
        "operationId": "retrievePortOut",
        "summary": "Retrieve one port out as last accepted",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "portOut",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The port out.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOut"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/healthz": {
      "get": {
        "operationId": "health",
        "summary": "Liveness",
        "responses": {
          "200": {
            "description": "The process serves requests.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Status"
                }
              }
            }
          },
          "405": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/readyz": {
      "get": {
        "operationId": "readiness",
        "summary": "Readiness: 503 while the journal's last write failed",
        "responses": {
          "200": {
            "description": "Ready.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Status"
                }
              }
            }
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "description": "Not ready.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Status"
                }
              }
            }
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "operationId": "openAPIDocument",
        "summary": "This document",
        "responses": {
          "200": {
            "description": "The OpenAPI document.",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          },
          "405": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/projects/{project}/portOuts/{portOut}/expire": {
      "post": {
        "operationId": "expirePortOut",
        "summary": "Expire a port out (forwarded)",
        "description": "Only initiated, processing and issued port outs can be expired. Forwarded to the tenant's upstream carrier API with the relay's key; the carrier's status and body come back unchanged. 501 without an upstream, 502 when it does not answer.",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "portOut",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The expired port out.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOut"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          },
          "501": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/projects/{project}/portOuts/{portOut}/credentials": {
      "get": {
        "operationId": "retrievePortOutCredentials",
        "summary": "Retrieve an issued port out's credentials (forwarded)",
        "description": "The response carries account numbers and PINs; the relay never logs or journals it. Forwarded to the tenant's upstream carrier API with the relay's key; the carrier's status and body come back unchanged. 501 without an upstream, 502 when it does not answer.",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "portOut",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The credentials.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOutCredentials"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          },
          "501": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    },
    "/testing/projects/{project}/portOuts/{portOut}/simulate": {
      "post": {
        "operationId": "simulatePortOutCompletion",
        "summary": "Simulate a port out's completion (forwarded)",
        "description": "Completes a port out of a test subscription. Forwarded to the tenant's upstream carrier API with the relay's key; the carrier's status and body come back unchanged. 501 without an upstream, 502 when it does not answer.",
        "security": [
          {
            "apiKey": []
          }
        ],
        "parameters": [
          {
            "name": "project",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          },
          {
            "name": "portOut",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The completed port out.",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/PortOut"
                }
              }
            }
          },
          "400": {
            "$ref": "#/components/responses/Error"
          },
          "401": {
            "$ref": "#/components/responses/Error"
          },
          "403": {
            "$ref": "#/components/responses/Error"
          },
          "404": {
            "$ref": "#/components/responses/Error"
          },
          "405": {
            "$ref": "#/components/responses/Error"
          },
          "413": {
            "$ref": "#/components/responses/Error"
          },
          "422": {
            "$ref": "#/components/responses/Error"
          },
          "500": {
            "$ref": "#/components/responses/Error"
          },
          "501": {
            "$ref": "#/components/responses/Error"
          },
          "502": {
            "$ref": "#/components/responses/Error"
          },
          "503": {
            "$ref": "#/components/responses/Error"
          }
        }
      }
    }
  },
  "components": {
    "securitySchemes": {
      "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the tenant's apiKeys."
      }
    },
    "responses": {
      "Error": {
        "description": "An error.",
        "content": {
          "application/json": {
            "schema": {
              "$ref": "#/components/schemas/Error"
            }
          }
        }
      }
    },
    "schemas": {
      "Error": {
        "type": "object",
        "required": [
          "object",
          "type",
          "message"
        ],
        "properties": {
          "object": {
            "const": "error"
          },
          "type": {
            "type": "string"
          },
          "code": {
            "type": "string"
          },
          "message": {
            "type": "string"
          },
          "hint": {
            "type": "string"
          },
          "documentation": {
            "type": "array",
            "items": {
              "type": "string"
            }
          },
          "details": {
            "type": "array",
            "items": {
              "type": "object",
              "required": [
                "field",
                "message"
              ],
              "properties": {
                "field": {
                  "type": "string"
                },
                "message": {
                  "type": "string"
                }
              }
            }
          }
        }
      },
      "Receipt": {
        "type": "object",
        "required": [
          "object",
          "id",
          "duplicate",
          "stale"
        ],
        "properties": {
          "object": {
            "const": "receipt"
          },
          "id": {
            "type": "string",
            "description": "The event id, or one derived from the port out and status for a bare object."
          },
          "duplicate": {
            "type": "boolean"
          },
          "stale": {
            "type": "boolean",
            "description": "The status did not move the port out forward, so the event is journaled but not forwarded."
          }
        }
      },
      "Status": {
        "type": "object",
        "required": [
          "status"
        ],
        "properties": {
          "status": {
            "type": "string"
          },
          "reason": {
            "type": "string"
          }
        }
      },
      "PortOut": {
        "type": "object",
        "required": [
          "object",
          "id",
          "behavior",
          "completedAt",
          "createdAt",
          "expiredAt",
          "failureReason",
          "status",
          "subscription",
          "user"
        ],
        "properties": {
          "object": {
            "const": "portOut"
          },
          "id": {
            "type": "string"
          },
          "behavior": {
            "enum": [
              "cancelOnly",
              "portOut"
            ]
          },
          "completedAt": {
            "type": [
              "string",
              "null"
            ],
            "format": "date-time"
          },
          "createdAt": {
            "type": "string",
            "format": "date-time"
          },
          "expiredAt": {
            "type": [
              "string",
              "null"
            ],
            "format": "date-time"
          },
          "failureReason": {
            "enum": [
              null,
              "consentNotGiven",
              "consentRequestCanceled"
            ]
          },
          "status": {
            "enum": [
              "initiated",
              "processing",
              "issued",
              "completed",
              "expired",
              "failed"
            ]
          },
          "subscription": {
            "type": "string"
          },
          "user": {
            "type": "string"
          }
        }
      },
      "PortOutList": {
        "type": "object",
        "required": [
          "object",
          "items",
          "moreItemsAfter",
          "moreItemsBefore"
        ],
        "properties": {
          "object": {
            "const": "list"
          },
          "items": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/PortOut"
            }
          },
          "moreItemsAfter": {
            "type": [
              "string",
              "null"
            ]
          },
          "moreItemsBefore": {
            "type": [
              "string",
              "null"
            ]
          }
        }
      },
      "Event": {
        "type": "object",
        "required": [
          "object",
          "id",
          "type",
          "data",
          "datacontenttype",
          "project",
          "source",
          "specversion",
          "time",
          "version"
        ],
        "properties": {
          "object": {
            "const": "event"
          },
          "id": {
            "type": "string"
          },
          "type": {
            "type": "string"
          },
          "data": {
            "type": "object"
          },
          "datacontenttype": {
            "const": "application/json"
          },
          "project": {
            "type": "string"
          },
          "source": {
            "type": "string"
          },
          "specversion": {
            "const": "1.0"
          },
          "time": {
            "type": "string",
            "format": "date-time"
          },
          "version": {
            "type": "string"
          },
          "previousData": {
            "type": "object"
          }
        }
      },
      "PortOutCredentials": {
        "type": "object",
        "required": [
          "object",
          "accountNumber",
          "accountPin",
          "portOut"
        ],
        "properties": {
          "object": {
            "const": "portOutCredentials"
          },
          "accountNumber": {
            "type": [
              "string",
              "null"
            ]
          },
          "accountPin": {
            "type": "string"
          },
          "portOut": {
            "type": "string"
          }
        }
      }
    }
  }
}
"""#

    static let bytes = Array(text.utf8)
}
