//! Unit tests of the PKI as a whole: chains, extensions, serials, validity, modes, idempotence
//! and renewal rules, plus `openssl verify` on every leaf. Test-only.
