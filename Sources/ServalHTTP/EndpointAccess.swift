import HTTPTypes
import ServalAuth

/// Every REST endpoint's access rule, in one table: the scope it needs and whether it touches one model (named by
/// its `:model` segment), every model, or none. Registering a route that is not in the table stops the server at
/// start (and fails every test), so no endpoint can be added without deciding who may call it.
enum EndpointAccess {
    /// Which models a route touches, for keys with a `models:` allow-list (only `infer` and `read` are limited).
    enum Models: Sendable {
        case none
        /// The `:model` path segment.
        case param
        /// The `:model` path segment up to its last colon: TF Serving's `POST /v1/models/NAME:predict`.
        case paramWithMethod
        case all
    }

    struct Rule: Sendable {
        let scopes: Set<Scope>
        let models: Models
        /// The request rule when it does not depend on the path (no model, or every model), made once.
        private let fixed: AccessRule?

        init(_ scopes: Set<Scope>, _ models: Models = .none) {
            self.scopes = scopes
            self.models = models
            // Admin and metrics are not limited by a models allow-list: it restricts infer and read.
            if scopes.isDisjoint(with: [.infer, .read]) {
                fixed = AccessRule(scopes)
            } else {
                fixed = switch models {
                case .none: AccessRule(scopes)
                case .all: AccessRule(scopes, models: .all)
                case .param, .paramWithMethod: nil
                }
            }
        }

        /// The rule for one request, with the model taken from its `:model` path segment as the route's handler
        /// reads it (`segment`: that segment, nil when the path has none).
        func access(segment: Substring?) -> AccessRule {
            if let fixed { return fixed }
            guard var model = segment else { return AccessRule(scopes, models: .all) }
            if models == .paramWithMethod, let colon = model.lastIndex(of: ":") { model = model[..<colon] }
            return AccessRule(scopes, models: .one(String(model)))
        }
    }

    static let health = Rule([.health])
    static let metrics = Rule([.metrics])
    static let read = Rule([.read])
    static let readModel = Rule([.read], .param)
    static let readAll = Rule([.read], .all)
    static let infer = Rule([.infer], .param)
    static let admin = Rule([.admin])

    /// "METHOD /path/:pattern" → rule, for every route the server registers.
    static let table: [String: Rule] = {
        var rules: [String: Rule] = [
            "GET /v2/health/live": health,
            "GET /v2/health/ready": health,
            "GET /metrics": metrics,
            // The contract is public: clients read it before they hold credentials.
            "GET /openapi.json": Rule([]),
            "GET /v2": read,
            "GET /v2/models/stats": readAll,
            "POST /v2/repository/index": readAll,
            "POST /v2/repository/models/:model/load": admin,
            "POST /v2/repository/models/:model/unload": admin,
            // Registry: versions, labels, history.
            "POST /v2/models/:model/versions": admin,
            "GET /v2/models/:model/versions": readModel,
            "GET /v2/models/:model/versions/:version/model": admin,
            "GET /v2/models/:model/labels": readModel,
            "PUT /v2/models/:model/labels/:label": admin,
            "DELETE /v2/models/:model/labels/:label": admin,
            "POST /v2/models/:model/labels/:label/rollback": admin,
            "GET /v2/models/:model/history": readModel,
            // Traffic.
            "GET /v2/models/:model/traffic": readModel,
            "PUT /v2/models/:model/traffic": admin,
            "DELETE /v2/models/:model/traffic": admin,
            // Monitoring.
            "GET /v2/models/:model/monitoring": readModel,
            "PUT /v2/models/:model/monitoring": admin,
            "DELETE /v2/models/:model/monitoring": admin,
            "GET /v2/models/:model/monitoring/status": readModel,
            "GET /v2/models/:model/versions/:version/monitoring/status": readModel,
            "POST /v2/models/:model/feedback": infer,
            "GET /v2/models/:model/logs": readModel,
            "GET /monitoring": readAll,
            "GET /monitoring/:model": readModel,
            // Jobs: by id, a job's status and result are for whoever may submit or read; the list covers every model.
            "GET /v2/jobs": readAll,
            "GET /v2/jobs/:id": Rule([.infer, .read]),
            "GET /v2/jobs/:id/result": Rule([.infer, .read]),
            "DELETE /v2/jobs/:id": Rule([.infer]),
            // Pipelines and webhooks.
            "GET /v2/pipelines": readAll,
            "GET /v2/pipelines/:name/runs": readAll,
            "GET /v2/pipelines/:name/runs/:id": readAll,
            "POST /v2/pipelines/:name/runs": admin,
            "PUT /v2/pipelines/:name/runs/:id": admin,
            "GET /v2/webhooks": admin,
            "PUT /v2/webhooks": admin,
            "GET /v2/webhooks/deliveries": admin,
        ]
        // KServe v2 per model, by version, and (TF Serving) by label.
        for prefix in ["/v2/models/:model", "/v2/models/:model/versions/:version"] {
            rules["GET \(prefix)"] = readModel
            rules["GET \(prefix)/ready"] = readModel
            rules["GET \(prefix)/config"] = readModel
            rules["GET \(prefix)/stats"] = readModel
            rules["POST \(prefix)/infer"] = infer
            rules["POST \(prefix)/jobs"] = infer
        }
        for prefix in ["/v1/models/:model", "/v1/models/:model/versions/:version", "/v1/models/:model/labels/:label"] {
            rules["GET \(prefix)"] = readModel
            rules["GET \(prefix)/metadata"] = readModel
            rules["POST \(prefix)"] = infer
        }
        rules["POST /v1/models/:model"] = Rule([.infer], .paramWithMethod)  // NAME:predict
        return rules
    }()

    static func rule(_ method: HTTPRequest.Method, _ path: String) -> Rule {
        guard let rule = table["\(method.rawValue) \(path)"] else {
            preconditionFailure("route \(method.rawValue) \(path) has no entry in EndpointAccess.table: decide which scope it needs")
        }
        return rule
    }
}
