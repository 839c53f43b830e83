//! Firestore: analysis logs and the per-user event stream.
