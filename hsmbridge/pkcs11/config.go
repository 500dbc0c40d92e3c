package pkcs11

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/keyd/keyd/hsmbridge"
)

// DefaultSessions is the session pool size used when Config.Sessions is 0.
const DefaultSessions = 4

// ErrTokenNotFound means no slot holds a token with the configured label.
// Errors carrying it also match hsmbridge.ErrUnavailable, so callers that
// only care whether the device is usable need not know about it.
var ErrTokenNotFound = errors.New("hsmbridge/pkcs11: token not found")

// Config opens one PKCS#11 token. It redacts the PIN when formatted with
// any fmt verb or logged with slog.
type Config struct {
	// Module is the path of the PKCS#11 library, for example
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel selects the token. Slot ids change when tokens are added
	// or removed, so the slot is found by this label on every Open.
	TokenLabel string
	// PIN is the user PIN, already resolved by the caller from a file or an
	// environment variable; never take it from argv or a config file body.
	PIN string
	// Sessions bounds the number of PKCS#11 sessions, and so the number of
	// concurrent device operations. 0 means DefaultSessions.
	Sessions int
}

var _ hsmbridge.Config = Config{}

// Validate reports a missing field or a negative Sessions.
func (c Config) Validate() error {
	switch {
	case c.Module == "":
		return errors.New("hsmbridge/pkcs11: config: module path is empty")
	case c.TokenLabel == "":
		return errors.New("hsmbridge/pkcs11: config: token label is empty")
	case c.PIN == "":
		return errors.New("hsmbridge/pkcs11: config: PIN is empty")
	case c.Sessions < 0:
		return fmt.Errorf("hsmbridge/pkcs11: config: sessions is %d, want >= 0", c.Sessions)
	}
	return nil
}

func (c Config) sessions() int {
	if c.Sessions == 0 {
		return DefaultSessions
	}
	return c.Sessions
}

const redacted = "[redacted]"

// String returns the configuration with the PIN redacted.
func (c Config) String() string {
	return fmt.Sprintf("pkcs11.Config{Module:%q, TokenLabel:%q, PIN:%s, Sessions:%d}",
		c.Module, c.TokenLabel, redacted, c.Sessions)
}

// GoString is String: %#v must not print the PIN either.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, ...) print String.
func (c Config) Format(f fmt.State, _ rune) { _, _ = fmt.Fprint(f, c.String()) }

// LogValue makes slog print the configuration with the PIN redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("module", c.Module),
		slog.String("token_label", c.TokenLabel),
		slog.String("pin", redacted),
		slog.Int("sessions", c.Sessions),
	)
}
