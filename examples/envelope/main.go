// Command envelope encrypts a file with envelope encryption through keyd:
// it asks keyd for a fresh data key (GenerateDataKey), encrypts the file
// locally with AES-256-GCM under that key, and writes a small header with
// the wrapped data key followed by the ciphertext. keyd never sees the
// file, and the file never holds the data key in the clear. With -decrypt
// it reads the header, has keyd unwrap the data key (Decrypt) and opens
// the file locally; a tampered header or body fails authentication and
// nothing is written.
//
//	export KEYD_ADDR=keyd-1:8200,keyd-2:8200 KEYD_TOKEN=... KEYD_CACERT=ca.pem
//	envelope -key invoices -in report.pdf -out report.pdf.keyd
//	envelope -decrypt -in report.pdf.keyd -out report.pdf
//
// The environment is read like the keyd CLI: KEYD_ADDR (comma-separated
// seed addresses, or -addr), KEYD_TOKEN (bearer token) and KEYD_CACERT
// (PEM file of the CA of the nodes' API certificates; unset uses the
// system roots).
//
// File format, all lengths big-endian:
//
//	"KEYDENV1" | u16 len | encryption context | u16 len | wrapped data key | nonce(12) | AES-256-GCM ciphertext+tag
//
// Everything before the nonce is the GCM additional data, so the header
// cannot be swapped or edited. The encryption context is bound to the
// wrapped key by keyd as well: Decrypt must repeat it, which is why it is
// stored (it is not secret). The whole file is processed in memory, which
// suits files up to a few hundred megabytes; larger ones should be split
// into chunks, each sealed with its own nonce under the same data key.
package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

const magic = "KEYDENV1"

// maxInput caps what is read into memory.
const maxInput = 1 << 30

var errFormat = errors.New("envelope: not an envelope file or corrupted header")

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envelope:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		in      = flag.String("in", "-", "input file (- for stdin)")
		out     = flag.String("out", "-", "output file (- for stdout)")
		keyName = flag.String("key", "", "keyd key that wraps the data key (required)")
		encCtx  = flag.String("context", "keyd-envelope-example", "encryption context bound to the data key (encrypt only; stored in the header)")
		decrypt = flag.Bool("decrypt", false, "decrypt an envelope file instead of encrypting")
		addr    = flag.String("addr", "", "comma-separated node API addresses (overrides $KEYD_ADDR)")
		timeout = flag.Duration("timeout", 30*time.Second, "deadline for the keyd calls")
	)
	flag.Parse()
	if *keyName == "" {
		return errors.New("-key is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := newClient(ctx, *addr)
	if err != nil {
		return err
	}
	defer c.Close()

	data, err := readInput(*in)
	if err != nil {
		return err
	}
	var result []byte
	if *decrypt {
		result, err = open(ctx, c, *keyName, data)
	} else {
		result, err = seal(ctx, c, *keyName, []byte(*encCtx), data)
	}
	if err != nil {
		return err
	}
	return writeOutput(*out, result)
}

// seal encrypts data under a fresh data key and returns the envelope.
func seal(ctx context.Context, c *client.Client, keyName string, encCtx, data []byte) ([]byte, error) {
	if len(encCtx) > 0xffff {
		return nil, errors.New("encryption context too long")
	}
	dk, err := c.GenerateDataKey(ctx, keyName, api.DataKeyRequest{Bytes: 32, Context: encCtx})
	if err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	defer clear(dk.Plaintext)
	var hdr bytes.Buffer
	hdr.WriteString(magic)
	writeField(&hdr, encCtx)
	writeField(&hdr, []byte(dk.Ciphertext))
	gcm, err := newGCM(dk.Plaintext)
	if err != nil {
		return nil, err
	}
	// Seal appends to the header; the additional data is a copy because
	// it may not overlap the output.
	aad := bytes.Clone(hdr.Bytes())
	return gcm.Seal(hdr.Bytes(), nil, data, aad), nil
}

// open reverses seal: keyd unwraps the data key, the body is opened here.
func open(ctx context.Context, c *client.Client, keyName string, env []byte) ([]byte, error) {
	if !bytes.HasPrefix(env, []byte(magic)) {
		return nil, errFormat
	}
	rest := env[len(magic):]
	encCtx, rest, ok := readField(rest)
	if !ok {
		return nil, errFormat
	}
	wrapped, rest, ok := readField(rest)
	if !ok {
		return nil, errFormat
	}
	aad := env[:len(env)-len(rest)]
	dk, err := c.Decrypt(ctx, keyName, string(wrapped), encCtx)
	switch {
	case errors.Is(err, api.ErrDecrypt):
		return nil, fmt.Errorf("unwrap data key: wrong key, wrong context or tampered header: %w", err)
	case err != nil:
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	defer clear(dk.Plaintext)
	gcm, err := newGCM(dk.Plaintext)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, nil, rest, aad)
	if err != nil {
		return nil, errors.New("file authentication failed: tampered or truncated")
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("data key: got %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	// A random 96-bit nonce per file, prepended by Seal: safe for far more
	// files than one data key (one per file) will ever see.
	return cipher.NewGCMWithRandomNonce(block)
}

func writeField(b *bytes.Buffer, v []byte) {
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(v))))
	b.Write(v)
}

func readField(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

func readInput(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("input larger than %d bytes", maxInput)
	}
	return data, nil
}

// writeOutput writes data, through a temporary file and a rename for a
// named output, so a failure never leaves a half-written file behind.
func writeOutput(name string, data []byte) error {
	if name == "-" {
		_, err := os.Stdout.Write(data)
		return err
	}
	tmp, err := os.CreateTemp(dirOf(name), ".envelope-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func dirOf(name string) string {
	if i := strings.LastIndexByte(name, os.PathSeparator); i >= 0 {
		return name[:i+1]
	}
	return "."
}

// newClient builds a client from -addr or $KEYD_ADDR, $KEYD_TOKEN and
// $KEYD_CACERT, like the keyd CLI.
func newClient(ctx context.Context, addrFlag string) (*client.Client, error) {
	src := addrFlag
	if src == "" {
		src = os.Getenv("KEYD_ADDR")
	}
	var addrs []string
	for _, a := range strings.Split(src, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no node address: set KEYD_ADDR or pass -addr")
	}
	var tc *tls.Config
	if path := os.Getenv("KEYD_CACERT"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("KEYD_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KEYD_CACERT: no PEM certificate in %s", path)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	return client.New(ctx, client.Config{Addrs: addrs, Token: os.Getenv("KEYD_TOKEN"), TLS: tc})
}
