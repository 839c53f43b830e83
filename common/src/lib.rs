//! Platform shim and shared domain for every dta-wide function: configuration, telemetry,
//! HTTP serving, the API error body, authentication, the PostgreSQL pool and the sleep-diary model.

pub mod audit_chain;
pub mod auth;
pub mod config;
pub mod consent;
pub mod diary;
pub mod error;
pub mod events;
pub mod job;
pub mod questionnaire;
pub mod runtime;
pub mod telemetry;

#[cfg(feature = "redis")]
pub mod cache;
#[cfg(feature = "crypto")]
pub mod crypto;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "firestore")]
pub mod documents;
#[cfg(all(feature = "http", feature = "redis"))]
pub mod guard;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod openapi;
#[cfg(feature = "pubsub")]
pub mod pubsub;
#[cfg(feature = "gcs")]
pub mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;
