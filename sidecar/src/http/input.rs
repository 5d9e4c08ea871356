//! What a request sent, read with refusals people can act on: [`JsonIn`] (a JSON object body)
//! and [`QueryIn`] (a query string) refuse with a message naming the field and what it must be,
//! taken from the type's OpenAPI schema (`"w" must be an integer from 1 to 255, not "x"`), never
//! a Rust type name (`expected u8`, `struct Quorum`); a body that is not a JSON object (`[3,2,2]`)
//! is refused. [`plain_words`] rewrites the serde wording left in other refusals.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema};

use crate::api::ErrorCode;
use crate::http::error::{code_for_status, ApiError};

/// What a value of `schema` (an OpenAPI schema as JSON) must be, in words.
pub fn expectation(schema: &Value) -> String {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let number = |name: &str| {
        schema
            .get(name)
            .and_then(|v| v.as_f64())
            .map(|v| format!("{v}"))
    };
    if types.contains(&"integer") || types.contains(&"number") {
        let kind = if types.contains(&"integer") {
            "an integer"
        } else {
            "a number"
        };
        match (number("minimum"), number("maximum")) {
            (Some(lo), Some(hi)) => format!("{kind} from {lo} to {hi}"),
            (Some(lo), None) => format!("{kind} of at least {lo}"),
            (None, Some(hi)) => format!("{kind} of at most {hi}"),
            (None, None) => kind.to_string(),
        }
    } else if types.contains(&"string") {
        match (schema["minLength"].as_u64(), schema["maxLength"].as_u64()) {
            (Some(lo), Some(hi)) => format!("a string of {lo} to {hi} characters"),
            _ => "a string".to_string(),
        }
    } else if types.contains(&"boolean") {
        "true or false".to_string()
    } else if types.contains(&"array") {
        "a list".to_string()
    } else {
        "a JSON object".to_string()
    }
}

/// The fields of a request type: name and schema (as JSON), in declaration order.
pub type Fields = Vec<(String, Value)>;

/// The fields of a JSON body type, from its schema (in declaration order).
pub fn body_fields<T: PartialSchema>() -> Fields {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return Vec::new();
    };
    object
        .properties
        .iter()
        .map(|(name, s)| (name.clone(), serde_json::to_value(s).unwrap_or_default()))
        .collect()
}

/// The query parameters of a query type, from its parameters' schemas.
pub fn query_fields<T: IntoParams>() -> Fields {
    T::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|p| {
            let schema = p
                .schema
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .unwrap_or_default();
            (p.name, schema)
        })
        .collect()
}

/// The text between the first pair of backticks of `message` (serde names fields so).
fn quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// serde's description of a wrong value ("string \"x\"", "integer `256`") without backticks.
fn got(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let what = rest.split(", expected").next()?;
    Some(what.replace('`', ""))
}

/// The refusal of a request whose field `path` (empty: the whole) failed with serde's
/// `message`; `given` finds what was sent for a field, when serde does not say.
fn refusal(
    fields: &Fields,
    path: &str,
    message: &str,
    given: impl Fn(&str) -> Option<String>,
) -> String {
    let names = || {
        fields
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let expect = |field: &str| {
        fields
            .iter()
            .find(|(n, _)| n == field)
            .map(|(_, s)| expectation(s))
    };
    if message.starts_with("missing field") {
        let field = quoted(message).unwrap_or("?");
        return match expect(field) {
            Some(e) => format!("\"{field}\" is missing: it must be {e}"),
            None => format!("\"{field}\" is missing"),
        };
    }
    if message.starts_with("unknown field") {
        let field = quoted(message).unwrap_or("?");
        return format!("unknown field \"{field}\"; the fields are {}", names());
    }
    let field = path.split('.').next().unwrap_or("");
    let sent = got(message)
        .or_else(|| given(field))
        .map_or_else(String::new, |g| format!(", not {g}"));
    match expect(field) {
        Some(e) => format!("\"{field}\" must be {e}{sent}"),
        None if field.is_empty() || field == "?" => plain_words(message),
        None => format!("\"{field}\": {}", plain_words(message)),
    }
}

/// A JSON object body of type `T`.
pub struct JsonIn<T>(pub T);

impl<T, S> FromRequest<S> for JsonIn<T>
where
    T: DeserializeOwned + PartialSchema,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON, with Content-Type: application/json",
            ));
        }
        // A body that failed (too large, stalled) is answered by `body::guard`.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(code_for_status(e.status()), e.body_text()))?;
        parse_json(&bytes).map(JsonIn)
    }
}

/// Reads a JSON object body of type `T`.
pub fn parse_json<T: DeserializeOwned + PartialSchema>(bytes: &[u8]) -> Result<T, ApiError> {
    let fields = body_fields::<T>();
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("the body is not JSON: {e}")))?;
    let unprocessable = |m: String| ApiError::new(ErrorCode::UnprocessableEntity, m);
    let Value::Object(object) = &value else {
        let names: Vec<String> = fields.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        return Err(unprocessable(format!(
            "the body must be a JSON object with the fields {}",
            names.join(", ")
        )));
    };
    let given = |field: &str| object.get(field).map(Value::to_string);
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        unprocessable(refusal(&fields, &path, &e.inner().to_string(), given))
    })
}

/// A query string of type `T`.
pub struct QueryIn<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryIn<T>
where
    T: DeserializeOwned + IntoParams,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(QueryIn)
    }
}

/// Reads a query string of type `T`.
pub fn parse_query<T: DeserializeOwned + IntoParams>(query: &str) -> Result<T, ApiError> {
    let fields = query_fields::<T>();
    let pairs = || form_urlencoded::parse(query.as_bytes());
    let given = |field: &str| {
        pairs()
            .find(|(k, _)| k == field)
            .map(|(_, v)| format!("{:?}", v.as_ref()))
    };
    let de = serde_urlencoded::Deserializer::new(pairs());
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(
            ErrorCode::BadRequest,
            refusal(&fields, &path, &e.inner().to_string(), given),
        )
    })
}

/// serde's words for Rust types (`expected u8`, `struct Quorum`) in a message, in plain words.
pub fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, plain) in [
        ("u8", "an integer from 0 to 255"),
        ("u16", "an integer from 0 to 65535"),
        ("u32", "an integer from 0 to 4294967295"),
        ("u64", "a whole number of at least 0"),
        ("usize", "a whole number of at least 0"),
        ("i32", "an integer"),
        ("i64", "an integer"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
    ] {
        out = out.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    while let Some(start) = out.find("expected struct ") {
        let end = out[start + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |i| start + 16 + i);
        out.replace_range(start..end, "expected a JSON object");
    }
    out.replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a JSON object")
        .replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Quorum, Settings, WriteQuorum};

    fn json_error<T: DeserializeOwned + PartialSchema + std::fmt::Debug>(
        body: &str,
    ) -> (u16, String) {
        let e = parse_json::<T>(body.as_bytes()).unwrap_err();
        (e.status().as_u16(), e.message().to_string())
    }

    #[test]
    fn json_refusals_name_the_field_and_what_it_must_be() {
        let cases = [
            (
                r#"{"n":3,"w":"x","r":2}"#,
                422,
                r#""w" must be an integer from 1 to 255, not string "x""#,
            ),
            (
                r#"{"n":3,"w":300,"r":2}"#,
                422,
                r#""w" must be an integer from 1 to 255, not integer 300"#,
            ),
            (
                r#"{"n":3,"w":-1,"r":2}"#,
                422,
                r#""w" must be an integer from 1 to 255, not integer -1"#,
            ),
            (
                r#"{"n":3,"w":1.5,"r":2}"#,
                422,
                r#""w" must be an integer from 1 to 255, not floating point 1.5"#,
            ),
            (
                r#"{"n":3,"r":2}"#,
                422,
                r#""w" is missing: it must be an integer from 1 to 255"#,
            ),
            (
                r#"{"n":3,"w":2,"r":2,"x":1}"#,
                422,
                r#"unknown field "x"; the fields are "n", "w", "r""#,
            ),
            (
                "[3,2,2]",
                422,
                r#"the body must be a JSON object with the fields "n", "w", "r""#,
            ),
            (
                "3",
                422,
                r#"the body must be a JSON object with the fields "n", "w", "r""#,
            ),
            (
                "null",
                422,
                r#"the body must be a JSON object with the fields "n", "w", "r""#,
            ),
            (
                "{",
                400,
                "the body is not JSON: EOF while parsing an object at line 1 column 1",
            ),
        ];
        for (body, status, message) in cases {
            assert_eq!(
                json_error::<Quorum>(body),
                (status, message.to_string()),
                "{body}"
            );
        }
        let (_, m) = json_error::<Settings>(r#"{"vnodes":"many"}"#);
        assert_eq!(
            m,
            r#""vnodes" must be an integer from 1 to 4096, not string "many""#
        );
        assert_eq!(
            parse_json::<Quorum>(br#"{"n":3,"w":2,"r":2}"#).unwrap(),
            Quorum { n: 3, w: 2, r: 2 }
        );
    }

    #[test]
    fn query_refusals_name_the_parameter() {
        let e = parse_query::<WriteQuorum>("w=abc").unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest);
        assert_eq!(
            e.message(),
            r#""w" must be an integer from 1 to 255, not "abc""#
        );
        let e = parse_query::<WriteQuorum>("w=256").unwrap_err();
        assert_eq!(
            e.message(),
            r#""w" must be an integer from 1 to 255, not "256""#
        );
        let e = parse_query::<WriteQuorum>("x=1").unwrap_err();
        assert_eq!(
            e.message(),
            r#"unknown field "x"; the fields are "w", "trace""#
        );
        assert_eq!(parse_query::<WriteQuorum>("w=2").unwrap().w, Some(2));
        assert_eq!(parse_query::<WriteQuorum>("").unwrap().w, None);
    }

    #[test]
    fn no_rust_type_names_are_left() {
        let m = plain_words("invalid type: string \"x\", expected u8 at line 1 column 8");
        assert_eq!(
            m,
            "invalid type: string \"x\", expected an integer from 0 to 255 at line 1 column 8"
        );
        let m = plain_words("invalid type: sequence, expected struct QuorumBody");
        assert_eq!(m, "invalid type: sequence, expected a JSON object");
        assert_eq!(plain_words("unknown field `x`"), "unknown field \"x\"");
    }
}
