//! Pub/Sub: publishing (official client, emulator-aware) and push-envelope handling.
