//! The versioned JSON event schemas exchanged between functions over Pub/Sub.
