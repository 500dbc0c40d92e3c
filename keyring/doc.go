// Package keyring holds keyd's key hierarchy below the root secret: the root
// key derived from the Shamir-combined secret, the barrier keyring that the
// root key wraps, customer key versions and their crypto operations, and the
// self-describing "keyd:v<N>:<base64>" text format.
//
// The package is pure: it performs no I/O and no logging, and never puts key
// material into an error, a panic or a formatted value. Every secret type
// redacts itself under fmt and log/slog.
package keyring
