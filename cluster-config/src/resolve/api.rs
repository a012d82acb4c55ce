//! `[api]`, `--api-token` and `--insecure-no-auth`: who may use the HTTP
//! API; and `[tenants.NAME]`: the limits of named tenants.
//!
//! Tokens in the file are SHA-256 digests, never tokens, so a config file
//! (or a ConfigMap) that leaks gives nobody access. The one token a flag or
//! `HERD_API_TOKEN` may give is an admin token of the default tenant; it is a
//! [`Secret`] from the moment it is read.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use herd_protocol::Tenant;
use herd_protocol::limits::{MAX_UNFINISHED_TASKS_RANGE, TENANT_MAX_HELD_BYTES_RANGE};

use super::range_check::{as_file_range, file_integer};
use crate::environment::Environment;
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::{ApiRole, ApiSettings, ApiToken, Secret, TenantLimitSettings, TokenSecret};
use crate::origin::Origin;

/// The flag and variable of the admin token.
pub const API_TOKEN_FLAG: &str = "--api-token";
/// See [`API_TOKEN_FLAG`].
pub const API_TOKEN_ENV: &str = "HERD_API_TOKEN";
/// The flag and variable that accept an open API beyond loopback.
pub const INSECURE_FLAG: &str = "--insecure-no-auth";
/// See [`INSECURE_FLAG`].
pub const INSECURE_ENV: &str = "HERD_INSECURE_NO_AUTH";

/// Shortest accepted token: 128 bits of hex or base64 are longer.
const MIN_TOKEN_CHARS: usize = 16;

/// Resolves who may use the API. `http` is the API's address (when it
/// resolved) and where it was set: an API on a non-loopback address without
/// any token is refused unless the operator said `--insecure-no-auth`.
pub(super) fn resolve_api(
    token_flag: Option<&str>,
    insecure_flag: bool,
    env: &Environment,
    file: Option<&LoadedFile>,
    http: Option<(SocketAddr, Origin)>,
    errors: &mut Vec<ConfigError>,
) -> ApiSettings {
    let section = file.map(|f| &f.config.api);
    let defaults = ApiSettings::default();
    let mut tokens = Vec::new();

    let given = token_flag
        .map(|t| (t.to_string(), Origin::Flag(API_TOKEN_FLAG)))
        .or_else(|| {
            env.get_non_empty(API_TOKEN_ENV)
                .map(|t| (t, Origin::Env(API_TOKEN_ENV)))
        });
    if let Some((token, origin)) = given {
        let token = token.trim().to_string();
        if token.len() < MIN_TOKEN_CHARS {
            errors.push(ConfigError::new(
                origin,
                "api.token",
                format!("is {} characters; give at least {MIN_TOKEN_CHARS} (32 random hex characters are recommended: `herd token new` makes one)", token.len()),
            ));
        } else {
            tokens.push(ApiToken {
                name: "admin".to_string(),
                secret: TokenSecret::Plain(Secret::new(token)),
                role: ApiRole::Admin,
                tenant: Tenant::default(),
            });
        }
    }

    if let (Some(file), Some(section)) = (file, section) {
        for (index, entry) in section.tokens.iter().enumerate() {
            let key = |field: &str| format!("api.tokens[{index}].{field}");
            let origin = file.origin_of("api.tokens");
            let mut fail = |field: &str, message: String| {
                errors.push(ConfigError::new(origin.clone(), key(field), message));
            };
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| format!("token-{index}"));
            let digest = match entry.sha256.as_deref().map(str::trim) {
                None | Some("") => {
                    fail("sha256", "is required: give the token's SHA-256 digest as 64 hex characters (`herd token new` prints a token and its digest; `printf %s \"$TOKEN\" | sha256sum` computes one)".to_string());
                    None
                }
                Some(hex) => match parse_sha256(hex) {
                    Some(digest) => Some(digest),
                    None => {
                        fail(
                            "sha256",
                            format!(
                                "is {} characters, not a SHA-256 digest; give 64 hex characters (the digest of the token, never the token itself)",
                                hex.len()
                            ),
                        );
                        None
                    }
                },
            };
            let role = match entry.role.as_deref() {
                None => {
                    fail(
                        "role",
                        "is required: give admin, submit or read".to_string(),
                    );
                    None
                }
                Some(text) => match ApiRole::parse(text) {
                    Some(role) => Some(role),
                    None => {
                        fail(
                            "role",
                            format!(
                                "is {text:?}; give admin (everything), submit (submit, read and cancel its tenant's tasks) or read (read only)"
                            ),
                        );
                        None
                    }
                },
            };
            let tenant = match entry.tenant.as_deref() {
                None => Some(Tenant::default()),
                Some(text) => match Tenant::parse(text) {
                    Ok(tenant) => Some(tenant),
                    Err(message) => {
                        fail("tenant", message);
                        None
                    }
                },
            };
            if let (Some(digest), Some(role), Some(tenant)) = (digest, role, tenant) {
                tokens.push(ApiToken {
                    name,
                    secret: TokenSecret::Sha256(digest),
                    role,
                    tenant,
                });
            }
        }
    }

    let insecure_no_auth = insecure_flag
        || env
            .get_non_empty(INSECURE_ENV)
            .is_some_and(|value| matches!(value.as_str(), "1" | "true" | "yes"));
    if let Some((addr, http_origin)) = http
        && tokens.is_empty()
        && !insecure_no_auth
        && !addr.ip().is_loopback()
    {
        errors.push(ConfigError::new(
            http_origin,
            "api.tokens",
            format!("the API would listen on {addr}, beyond this machine, with no token: anyone who reaches it could submit, read and cancel every task. Give an admin token with {API_TOKEN_FLAG} or {API_TOKEN_ENV} (`herd token new` makes one), add [[api.tokens]] to the config file, listen on 127.0.0.1 with --http, or accept an open API with {INSECURE_FLAG}"),
        ));
    }

    ApiSettings {
        tokens,
        open_metrics: section
            .and_then(|s| s.open_metrics)
            .unwrap_or(defaults.open_metrics),
        open_health: section
            .and_then(|s| s.open_health)
            .unwrap_or(defaults.open_health),
        insecure_no_auth,
    }
}

/// Resolves `[tenants.NAME]`.
pub(super) fn resolve_tenants(
    file: Option<&LoadedFile>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<Tenant, TenantLimitSettings> {
    let Some(file) = file else {
        return BTreeMap::new();
    };
    let mut tenants = BTreeMap::new();
    for (name, section) in &file.config.tenants {
        let prefix = format!("tenants.{name}");
        let tenant = match Tenant::parse(name) {
            Ok(tenant) => tenant,
            Err(message) => {
                errors.push(ConfigError::new(file.origin_of(&prefix), prefix, message));
                continue;
            }
        };
        let max_unfinished_tasks = file_integer(
            Some(file),
            &format!("{prefix}.max_unfinished_tasks"),
            section.max_unfinished_tasks,
            as_file_range(MAX_UNFINISHED_TASKS_RANGE),
            "set how many unfinished tasks this tenant may hold before its submissions get 429",
            errors,
        )
        .map(|v| v as u64);
        let max_held_bytes = file_integer(
            Some(file),
            &format!("{prefix}.max_held_bytes"),
            section.max_held_bytes,
            as_file_range(TENANT_MAX_HELD_BYTES_RANGE),
            "set how many bytes of unfinished payloads and results this tenant may hold before its submissions get 429",
            errors,
        )
        .map(|v| v as u64);
        tenants.insert(
            tenant,
            TenantLimitSettings {
                max_unfinished_tasks,
                max_held_bytes,
            },
        );
    }
    tenants
}

/// 64 hex characters as 32 bytes.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::parse_text;
    use std::path::Path;

    fn resolve(text: &str, flag: Option<&str>, http: &str) -> (ApiSettings, Vec<ConfigError>) {
        let env = Environment::default();
        let file = parse_text(Path::new("herd.toml"), text, &env).unwrap();
        let mut errors = Vec::new();
        let api = resolve_api(
            flag,
            false,
            &env,
            Some(&file),
            Some((http.parse().unwrap(), Origin::Default)),
            &mut errors,
        );
        (api, errors)
    }

    #[test]
    fn file_tokens_are_digests_with_a_role_and_tenant() {
        let digest = "ab".repeat(32);
        let (api, errors) = resolve(
            &format!(
                "[[api.tokens]]\nname = \"ci\"\nsha256 = \"{digest}\"\nrole = \"submit\"\ntenant = \"team-a\"\n"
            ),
            None,
            "0.0.0.0:8100",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(api.tokens.len(), 1);
        assert_eq!(api.tokens[0].secret, TokenSecret::Sha256([0xab; 32]));
        assert_eq!(api.tokens[0].role, ApiRole::Submit);
        assert_eq!(api.tokens[0].tenant.as_str(), "team-a");
    }

    #[test]
    fn a_token_written_in_clear_or_a_bad_role_is_refused_with_the_fix() {
        let (_, errors) = resolve(
            "[[api.tokens]]\nsha256 = \"my-secret-token\"\nrole = \"root\"\n",
            None,
            "127.0.0.1:8100",
        );
        let text = format!("{errors:?}");
        assert!(text.contains("api.tokens[0].sha256"), "{text}");
        assert!(
            !text.contains("my-secret-token"),
            "the value is never echoed: {text}"
        );
        assert!(
            text.contains("give admin, submit or read") || text.contains("give admin (everything)"),
            "{text}"
        );
    }

    #[test]
    fn an_open_api_beyond_loopback_is_refused_unless_accepted() {
        let (_, errors) = resolve("", None, "0.0.0.0:8100");
        assert!(format!("{errors:?}").contains("--insecure-no-auth"));
        let (_, errors) = resolve("", None, "127.0.0.1:8100");
        assert!(errors.is_empty());
        let (api, errors) = resolve("", Some("0123456789abcdef0123"), "0.0.0.0:8100");
        assert!(errors.is_empty());
        assert_eq!(api.tokens[0].role, ApiRole::Admin);
        let (_, errors) = resolve("", Some("short"), "127.0.0.1:8100");
        assert!(format!("{errors:?}").contains("at least 16"));
        let env = Environment::default();
        let mut errors = Vec::new();
        resolve_api(
            None,
            true,
            &env,
            None,
            Some(("0.0.0.0:1".parse().unwrap(), Origin::Default)),
            &mut errors,
        );
        assert!(errors.is_empty());
    }
}
