package softhsm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ConfEnv is the environment variable SoftHSM2 reads its configuration
// path from.
const ConfEnv = "SOFTHSM2_CONF"

// ModulePaths are the places ModulePath looks for the SoftHSM2 PKCS#11
// module, in order (Debian's path first).
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
}

// ErrTokenExists means a token with the label already exists under the
// configuration; InitToken refuses to create a second one because Open
// finds tokens by label.
var ErrTokenExists = errors.New("softhsm: token exists")

// ErrNotInstalled means the SoftHSM2 module or softhsm2-util is missing;
// scripts/setup-softhsm.sh installs both.
var ErrNotInstalled = errors.New("softhsm: SoftHSM2 not installed")

// ModulePath returns the first of ModulePaths that exists, or an error
// wrapping ErrNotInstalled that names every path tried.
func ModulePath() (string, error) {
	for _, p := range ModulePaths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no module at %s", ErrNotInstalled, strings.Join(ModulePaths, " or "))
}

// UtilPath returns the path of softhsm2-util, or an error wrapping
// ErrNotInstalled.
func UtilPath() (string, error) {
	p, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	return p, nil
}

// WriteConfig creates dir/tokens (mode 0700) and writes dir/softhsm2.conf
// (mode 0600) pointing at it, with the file object store and log level
// ERROR. It returns the absolute path of the configuration. Rewriting an
// existing configuration keeps its tokens.
func WriteConfig(dir string) (confPath string, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("softhsm: %w", err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("softhsm: create token directory: %w", err)
	}
	if strings.ContainsAny(tokens, "\n\r") {
		return "", fmt.Errorf("softhsm: token directory %q contains a newline", tokens)
	}
	conf := fmt.Sprintf("# written by keyd hsmbridge/softhsm\n"+
		"directories.tokendir = %s\n"+
		"objectstore.backend = file\n"+
		"log.level = ERROR\n"+
		"slots.removable = false\n", tokens)
	confPath = filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("softhsm: write config: %w", err)
	}
	return confPath, nil
}

// InitToken initialises a new token labelled label in the free slot of the
// configuration at confPath, with the given user and security-officer
// PINs (4 to 255 characters). It runs softhsm2-util with SOFTHSM2_CONF set
// for that child only; the calling process's environment is untouched.
//
// softhsm2-util takes the PINs on its command line, where other local users
// can see them while it runs: use InitToken for dev and test tokens only.
// It returns an error wrapping ErrTokenExists when a token already has
// label, so a restarted dev node can call it every time and ignore that
// error. A token created after this process opened the module is invisible
// to it until every HSM on the module is closed (see the package comment).
func InitToken(ctx context.Context, confPath, label, userPIN, soPIN string) error {
	util, err := UtilPath()
	if err != nil {
		return err
	}
	if label == "" || len(label) > 32 || strings.TrimSpace(label) != label {
		return fmt.Errorf("softhsm: token label must be 1 to 32 bytes without outer spaces, got %q", label)
	}
	for _, pin := range []string{userPIN, soPIN} {
		if len(pin) < 4 || len(pin) > 255 {
			return errors.New("softhsm: PINs must be 4 to 255 characters")
		}
	}
	labels, err := TokenLabels(ctx, confPath)
	if err != nil {
		return err
	}
	if slices.Contains(labels, label) {
		return fmt.Errorf("softhsm: init token %q: %w", label, ErrTokenExists)
	}
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free",
		"--label", label, "--so-pin", soPIN, "--pin", userPIN)
	cmd.Env = append(os.Environ(), ConfEnv+"="+confPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		// softhsm2-util's output names the cause (bad config, token
		// directory permissions) and never echoes the PINs.
		return fmt.Errorf("softhsm: init token %q: %w: %s", label, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TokenLabels returns the labels of the initialised tokens under the
// configuration at confPath, as `softhsm2-util --show-slots` prints them.
func TokenLabels(ctx context.Context, confPath string) ([]string, error) {
	util, err := UtilPath()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, util, "--show-slots")
	cmd.Env = append(os.Environ(), ConfEnv+"="+confPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("softhsm: show slots: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return parseLabels(string(out)), nil
}

// parseLabels extracts the non-empty "Label:" values of --show-slots
// output.
func parseLabels(out string) []string {
	var labels []string
	for line := range strings.Lines(out) {
		// Token labels are space padded to 32 bytes; a free slot's is empty.
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Label:"); ok {
			if l := strings.TrimSpace(rest); l != "" {
				labels = append(labels, l)
			}
		}
	}
	return labels
}
