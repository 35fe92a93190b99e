//! What the OpenAPI document says beyond the handlers' own annotations:
//! - [`PolicyModel`] (and [`ServiceRef`]): the policy model's JSON shape, as
//!   written in a policy file (the model lives in `control`, which knows
//!   nothing of OpenAPI);
//! - [`CommonResponses`]: the answers the layers give for every operation of
//!   a kind: 401 and 429 for every call that needs a token, 400/413/415 for
//!   every call with a body, 400 for every call with parameters.
//!
//! The patterns here are the server's: [`MAC_PATTERN`] is what
//! [`super::inventory::mac_param`] accepts, [`TOKEN_NAME_PATTERN`] what
//! [`crate::token::valid_name`] accepts.

use std::borrow::Cow;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, PartialSchema, ToSchema};

/// A MAC in a path, a query or a request body: six pairs of hex digits,
/// all separated by `:` or all by `-`.
pub const MAC_PATTERN: &str =
    "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$";

/// A token name.
pub const TOKEN_NAME_PATTERN: &str = "^[A-Za-z0-9._@-]{1,64}$";

/// The policy model (request body of `PUT /policy/draft`, answer of `GET
/// /policy/draft` and `GET /policy/versions/{version}`).
pub struct PolicyModel;

/// A service in a rule or a management exception: a name, or inline
/// `{proto, ports}`.
pub struct ServiceRef;

/// Integer or text, as the policy file takes protocols and ports.
fn scalar(description: &str) -> serde_json::Value {
    serde_json::json!({
        "type": ["integer", "string"],
        "minimum": i64::MIN,
        "maximum": i64::MAX,
        "description": description,
    })
}

fn strings(description: &str) -> serde_json::Value {
    serde_json::json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn optional_string(description: &str) -> serde_json::Value {
    serde_json::json!({"type": ["string", "null"], "description": description})
}

fn array_of(name: &str) -> serde_json::Value {
    serde_json::json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}})
}

fn label_values() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
        "description": "Label key -> value; numbers and booleans are kept as text.",
    })
}

/// The model's schemas by name, as JSON Schema (OpenAPI 3.1).
fn model_schemas() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let port_spec = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["proto"],
        "description": "One protocol and its destination ports (none: every port).",
        "properties": {
            "proto": scalar("tcp, udp, icmp, icmpv6, any, or a protocol number"),
            "ports": {"type": "array", "items": scalar("445, or a range \"8000-8080\"")},
        },
    });
    vec![
        (
            "PolicyModel",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": "The policy model: the fields of a policy file (docs/operator-guide.md), \
                    each optional. Cross-references (groups in rules, services, MACs, CIDRs) are \
                    checked when it is stored: 422 lists every problem.",
                "properties": {
                    "default_mode": {"type": "string", "enum": ["learn", "audit", "enforce"]},
                    "workloads": array_of("PolicyWorkload"),
                    "groups": array_of("PolicyGroup"),
                    "services": array_of("PolicyService"),
                    "rules": array_of("PolicyRule"),
                    "management": array_of("PolicyManagement"),
                    "quarantine": array_of("PolicyQuarantine"),
                    "blocklist": strings("Blocked CIDRs or addresses"),
                    "assignment": {"$ref": "#/components/schemas/PolicyAssignment"},
                },
            }),
        ),
        (
            "PolicyWorkload",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["mac"],
                "properties": {
                    "mac": {"type": "string", "description": "02:00:00:00:01:0a"},
                    "name": {"type": "string"},
                    "labels": label_values(),
                    "ips": strings("Addresses known for it"),
                    "vlan": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
                    "origin": {"type": "string", "enum": ["declared", "imported", "observed"]},
                    "first_seen": optional_string("RFC 3339, UTC"),
                },
            }),
        ),
        (
            "PolicyGroup",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "description": "Members by label selector (`match`), by MAC (`macs`) or by CIDR (`ips`).",
                "properties": {
                    "name": {"type": "string"},
                    "mode": {"type": "string", "enum": ["learn", "audit", "enforce"]},
                    "match": {
                        "type": ["object", "null"],
                        "description": "Label key -> a value or a list of accepted values.",
                        "additionalProperties": {
                            "type": ["string", "integer", "number", "boolean", "array"],
                            "items": {"type": ["string", "integer", "number", "boolean"]},
                        },
                    },
                    "macs": {"type": ["array", "null"], "items": {"type": "string"}},
                    "ips": {"type": ["array", "null"], "items": {"type": "string"}},
                    "comment": optional_string(""),
                },
            }),
        ),
        ("PolicyPortSpec", port_spec),
        (
            "PolicyService",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "description": "A named service: `proto` (+ `ports`), or several `entries`.",
                "properties": {
                    "name": {"type": "string"},
                    "proto": {
                        "type": ["integer", "string", "null"],
                        "minimum": i64::MIN,
                        "maximum": i64::MAX,
                    },
                    "ports": {"type": "array", "items": scalar("445, or a range \"8000-8080\"")},
                    "entries": array_of("PolicyPortSpec"),
                    "comment": optional_string(""),
                },
            }),
        ),
        (
            "ServiceRef",
            json!({
                "type": ["string", "object"],
                "description": "A service name (built-in, user-defined, or `any`), or inline \
                    `{proto, ports}`.",
                "additionalProperties": false,
                "required": ["proto"],
                "properties": {
                    "proto": scalar("tcp, udp, icmp, icmpv6, any, or a protocol number"),
                    "ports": {"type": "array", "items": scalar("445, or a range \"8000-8080\"")},
                },
            }),
        ),
        (
            "PolicyRule",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["id", "src", "dst", "services", "action"],
                "properties": {
                    "id": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                    "src": strings("Group names, or [\"any\"]"),
                    "dst": strings("Group names, or [\"any\"]"),
                    "services": array_of("ServiceRef"),
                    "action": {"type": "string", "enum": ["allow", "deny"]},
                    "enabled": {"type": "boolean"},
                    "comment": optional_string(""),
                },
            }),
        ),
        (
            "PolicyManagement",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["cidr", "services"],
                "properties": {
                    "cidr": {"type": "string"},
                    "macs": strings("The management hosts' MACs"),
                    "workloads": strings("The management hosts, by declared workload name"),
                    "services": array_of("ServiceRef"),
                },
            }),
        ),
        (
            "PolicyQuarantine",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["mac"],
                "properties": {
                    "mac": {"type": "string"},
                    "reason": optional_string(""),
                    "actor": optional_string(""),
                    "at": optional_string("RFC 3339, UTC"),
                },
            }),
        ),
        (
            "PolicyAssignment",
            json!({
                "type": "object",
                "additionalProperties": false,
                "description": "How MACs first seen on the wire get their labels.",
                "properties": {
                    "strategy": {"type": "string", "enum": ["first", "merge"]},
                    "rules": array_of("PolicyAssignmentRule"),
                },
            }),
        ),
        (
            "PolicyAssignmentRule",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["labels"],
                "properties": {
                    "mac_prefix": optional_string("02:00:00:00:01:*, an OUI, or 02:00:00:00:01:00/40"),
                    "vlan": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
                    "cidr": optional_string(""),
                    "labels": label_values(),
                },
            }),
        ),
    ]
}

/// One of [`model_schemas`] as a utoipa schema (a plain object if the JSON
/// does not parse; a test checks each one round-trips).
fn model_schema(name: &str) -> RefOr<Schema> {
    model_schemas()
        .into_iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| serde_json::from_value(v).ok())
        .unwrap_or_else(|| RefOr::T(Schema::default()))
}

fn register_model(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    for (name, _) in model_schemas() {
        schemas.push((name.to_string(), model_schema(name)));
    }
}

impl PartialSchema for PolicyModel {
    fn schema() -> RefOr<Schema> {
        model_schema("PolicyModel")
    }
}

impl ToSchema for PolicyModel {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PolicyModel")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        register_model(schemas);
    }
}

impl PartialSchema for ServiceRef {
    fn schema() -> RefOr<Schema> {
        model_schema("ServiceRef")
    }
}

impl ToSchema for ServiceRef {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ServiceRef")
    }
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// The shared error answers, by component name.
fn common_responses() -> Vec<(&'static str, Response)> {
    let integer = || utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer);
    let string = || utoipa::openapi::ObjectBuilder::new().schema_type(Type::String);
    vec![
        (
            "BadRequest",
            error_response(
                "`bad_request`: the request cannot be read (a parameter, a MAC or a body that \
                 does not parse; `field` names it)",
            )
            .build(),
        ),
        (
            "Unauthorized",
            error_response("`unauthorized`: no token, or an invalid or revoked one")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(string())
                        .description(Some("Bearer realm=\"bulkhead\""))
                        .build(),
                )
                .build(),
        ),
        (
            "RateLimited",
            error_response(
                "`rate_limited`: an invalid token from an address that spent its budget of \
                 failed attempts (a valid token is never refused)",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(integer().minimum(Some(1)))
                    .description(Some(
                        "Seconds until failures from this address are counted again",
                    ))
                    .build(),
            )
            .build(),
        ),
        (
            "PayloadTooLarge",
            error_response("`payload_too_large`: the body is over the server's limit (8 MiB)")
                .build(),
        ),
        (
            "UnsupportedMediaType",
            error_response("`unsupported_media_type`: the body is not `application/json`").build(),
        ),
    ]
}

/// Adds the shared answers to every operation they apply to.
pub struct CommonResponses;

fn add(op: &mut Operation, status: &str, component: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{component}"))));
}

/// An operation that needs no token declares `security: [{}]`.
fn needs_token(op: &Operation) -> bool {
    !op.security
        .as_ref()
        .is_some_and(|s| s.iter().any(|r| r == &Default::default()))
}

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, resp) in common_responses() {
            components
                .responses
                .insert(name.to_string(), RefOr::T(resp));
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if needs_token(op) {
                    add(op, "401", "Unauthorized");
                    add(op, "429", "RateLimited");
                }
                if op.request_body.is_some() {
                    add(op, "400", "BadRequest");
                    add(op, "413", "PayloadTooLarge");
                    add(op, "415", "UnsupportedMediaType");
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add(op, "400", "BadRequest");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_schema_survives_the_trip_through_utoipa() {
        for (name, json) in model_schemas() {
            let parsed: RefOr<Schema> = serde_json::from_value(json.clone()).expect(name);
            let back = serde_json::to_value(&parsed).expect(name);
            assert_eq!(back, json, "{name}");
        }
    }

    /// [`MAC_PATTERN`] by hand (no regex crate here; schemathesis checks the
    /// pattern against the server both ways): the forms it matches and the
    /// near misses it does not are what `mac_param` takes and refuses.
    #[test]
    fn mac_param_takes_exactly_the_documented_form() {
        for (text, ok) in [
            ("02:00:00:00:01:0a", true),
            ("02-00-00-00-01-0A", true),
            ("aB:cD:eF:01:23:45", true),
            ("02:00-00:00:01:0a", false),
            (" 02:00:00:00:01:0a", false),
            ("02:00:00:00:01:0a\n", false),
            ("+2:00:00:00:01:0a", false),
            ("02:00:00:00:01", false),
            ("02:00:00:00:01:0a:00", false),
            ("02.00.00.00.01.0a", false),
            ("0g:00:00:00:01:0a", false),
            ("zz", false),
            ("", false),
        ] {
            assert_eq!(
                super::super::inventory::mac_param(text, "mac").is_ok(),
                ok,
                "{text:?}"
            );
        }
    }
}
