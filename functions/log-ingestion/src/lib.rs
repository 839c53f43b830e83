//! `log-ingestion`: HTTPS imports of wearable sleep data (Apple Health, Fitbit, Oura), merged
//! into the patient's nights with provenance. Called by the app through the load balancer.

pub mod api;
pub mod merge;
pub mod model;
pub mod parse;
