//! Block devices and media (placeholder).
