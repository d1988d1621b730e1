//! The routes, each declared once with its OpenAPI description.

mod api_keys;
mod keys;
mod rooms;
mod sessions;
mod system;
mod tenants;
mod tokens;

use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;
use crate::openapi::ApiDoc;

/// Every route of the API, with the document describing it.
pub fn api() -> OpenApiRouter<AdminState> {
    let (schemas, paths, publish) = routes!(rooms::publish);
    let publish = publish.layer(DefaultBodyLimit::max(crate::MAX_PUBLISH_BODY_BYTES));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::get_tenant, tenants::patch_tenant, tenants::delete_tenant))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::delete_key))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::delete_api_key))
        .routes(routes!(tokens::mint_token))
        .routes(routes!(tokens::create_ticket))
        .routes(routes!(tokens::create_revocation, tokens::list_revocations))
        .routes(routes!(tokens::delete_revocation))
        .routes((schemas, paths, publish))
        .routes(routes!(rooms::list_rooms))
        .routes(routes!(rooms::presence))
        .routes(routes!(sessions::list_connections, sessions::kick_connections))
        .routes(routes!(sessions::stats))
}
