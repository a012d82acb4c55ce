//! Who is calling: bearer tokens with a role and a tenant, and the
//! content-type rule that keeps browsers from posting to the API.
//!
//! Guarantees:
//! - with tokens configured, every route but the probes (`/live`, `/ready`,
//!   `/startup`) and, unless closed, `/metrics` and `/health` answers 401
//!   without a valid `Authorization: Bearer` token, before any handler runs;
//! - tokens are compared as SHA-256 digests in constant time, and neither a
//!   token nor its digest appears in any answer or log line;
//! - every `POST` and `PUT` must say `Content-Type: application/json` (415
//!   otherwise), so a web page cannot send the API a "simple" cross-origin
//!   request, which browsers send without asking: a form or `text/plain`
//!   post, or a post with no body at all.
//!
//! What a role may do is checked by each handler through [`Caller`]: the
//! route decides, so the rule sits next to what it protects.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_config::{ApiRole, ApiSettings, TokenSecret};
use herd_protocol::Tenant;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The caller of a request, as its token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's label (`admin` for `--api-token`; `open` without tokens).
    pub name: String,
    /// What it may do.
    pub role: ApiRole,
    /// Whose tasks it submits and sees.
    pub tenant: Tenant,
}

impl Caller {
    /// The caller of an API without tokens: everything, as the default
    /// tenant (the node refuses to serve that beyond loopback unless told).
    fn open() -> Caller {
        Caller {
            name: "open".to_string(),
            role: ApiRole::Admin,
            tenant: Tenant::default(),
        }
    }

    /// True for admins, who see every tenant.
    pub fn is_admin(&self) -> bool {
        self.role == ApiRole::Admin
    }

    /// 403 unless the caller's role is at least `needed`.
    pub fn require(&self, needed: ApiRole, action: &str) -> Result<(), ApiError> {
        if self.role >= needed {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_role",
            format!(
                "token {:?} has role {}, and {action} needs role {}; use a token with that role",
                self.name,
                self.role.as_str(),
                needed.as_str()
            ),
        ))
    }

    /// 403 unless the caller may act on a task of `tenant`: its own, or any
    /// for an admin.
    pub fn require_tenant(&self, tenant: &Tenant, what: &str) -> Result<(), ApiError> {
        if self.is_admin() || &self.tenant == tenant {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_tenant",
            format!(
                "{what} belongs to another tenant; token {:?} acts for tenant {:?} only",
                self.name,
                self.tenant.as_str()
            ),
        ))
    }

    /// The tenant a listing is limited to: the caller's, or none for admins.
    pub fn list_scope(&self) -> Option<Tenant> {
        (!self.is_admin()).then(|| self.tenant.clone())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthorized)
    }
}

/// The tokens a node accepts, as digests.
pub struct Authenticator {
    tokens: Vec<([u8; 32], Caller)>,
    open_metrics: bool,
    open_health: bool,
}

impl Authenticator {
    /// Digests the configured tokens.
    pub fn new(settings: &ApiSettings) -> Self {
        let tokens = settings
            .tokens
            .iter()
            .map(|token| {
                let digest = match &token.secret {
                    TokenSecret::Sha256(digest) => *digest,
                    TokenSecret::Plain(secret) => digest_of(secret.expose()),
                };
                let caller = Caller {
                    name: token.name.clone(),
                    role: token.role,
                    tenant: token.tenant.clone(),
                };
                (digest, caller)
            })
            .collect();
        Authenticator {
            tokens,
            open_metrics: settings.open_metrics,
            open_health: settings.open_health,
        }
    }

    /// True when `/metrics` answers without a token.
    pub fn metrics_open(&self) -> bool {
        !self.requires_token() || self.open_metrics
    }

    /// True when requests must carry a token.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn is_open(&self, path: &str) -> bool {
        match path {
            "/live" | "/ready" | "/startup" => true,
            "/metrics" => self.open_metrics,
            "/health" => self.open_health,
            _ => false,
        }
    }

    /// The caller a bearer token stands for. Every configured digest is
    /// compared, in constant time, so the answer's timing says nothing about
    /// which token came close.
    fn caller_of(&self, token: &str) -> Option<Caller> {
        let digest = digest_of(token);
        let mut found = None;
        for (known, caller) in &self.tokens {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// The SHA-256 digest of a token.
pub fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Middleware: attaches the [`Caller`] of every request, or answers 401.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !auth.requires_token() {
        request.extensions_mut().insert(Caller::open());
        return next.run(request).await;
    }
    if auth.is_open(request.uri().path()) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return unauthorized().into_response();
    };
    match auth.caller_of(token) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            metrics::counter!("herd_api_auth_failures_total").increment(1);
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the bearer token is not one this cluster accepts; check HERD_TOKEN (the CLI) or the Authorization header",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// 401: no token was sent.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing_token",
        "this API needs a token: send `Authorization: Bearer <token>` (the CLI reads HERD_TOKEN)",
    )
}

/// Middleware: answers 415 to a `POST` or `PUT` that does not say
/// `Content-Type: application/json`.
pub async fn require_json(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::POST | Method::PUT) {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let shown = if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!(
                    "Content-Type {:?}",
                    content_type.chars().take(100).collect::<String>()
                )
            };
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("{} {} was sent with {shown}; send `Content-Type: application/json` (also when the body is empty)", request.method(), request.uri().path()),
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_config::{ApiToken, Secret};

    fn settings() -> ApiSettings {
        ApiSettings {
            tokens: vec![
                ApiToken {
                    name: "admin".into(),
                    secret: TokenSecret::Plain(Secret::new("admin-token-0123456789")),
                    role: ApiRole::Admin,
                    tenant: Tenant::default(),
                },
                ApiToken {
                    name: "team-a".into(),
                    secret: TokenSecret::Sha256(digest_of("team-a-token-0123456789")),
                    role: ApiRole::Submit,
                    tenant: Tenant::parse("team-a").unwrap(),
                },
            ],
            ..ApiSettings::default()
        }
    }

    #[test]
    fn tokens_map_to_their_callers_and_nothing_else_does() {
        let auth = Authenticator::new(&settings());
        assert_eq!(
            auth.caller_of("admin-token-0123456789").unwrap().role,
            ApiRole::Admin
        );
        let team = auth.caller_of("team-a-token-0123456789").unwrap();
        assert_eq!(team.tenant.as_str(), "team-a");
        assert!(auth.caller_of("team-a-token-012345678").is_none());
        assert!(auth.caller_of("").is_none());
    }

    #[test]
    fn roles_and_tenants_are_enforced() {
        let auth = Authenticator::new(&settings());
        let team = auth.caller_of("team-a-token-0123456789").unwrap();
        assert!(team.require(ApiRole::Submit, "submitting").is_ok());
        let refused = team.require(ApiRole::Admin, "draining a node").unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(team.require_tenant(&Tenant::default(), "task x").is_err());
        assert_eq!(team.list_scope(), Some(Tenant::parse("team-a").unwrap()));
        let admin = auth.caller_of("admin-token-0123456789").unwrap();
        assert!(
            admin
                .require_tenant(&Tenant::parse("team-a").unwrap(), "task x")
                .is_ok()
        );
        assert_eq!(admin.list_scope(), None);
    }
}
