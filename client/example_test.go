package client_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// record is what an application stores: the data encrypted locally under a
// data key, and that data key wrapped by keyd. keyd never sees the data.
type record struct {
	WrappedKey string // keyd:vN:..., safe to store next to the data
	Sealed     []byte // nonce || AES-256-GCM ciphertext
}

// Example_envelopeEncryption encrypts data locally under a fresh data key
// and stores only the wrapped key; reading decrypts the data key with keyd
// and then the data locally.
func Example_envelopeEncryption() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pem, err := os.ReadFile(os.Getenv("KEYD_CACERT"))
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := client.New(ctx, client.Config{
		Addrs: []string{"keyd-1.example:8200", "keyd-2.example:8200"},
		Token: os.Getenv("KEYD_TOKEN"),
		TLS:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The encryption context binds the wrapped key to its use; decrypting
	// must repeat it.
	encContext := []byte("table=invoices,id=42")

	// Write path: one data key per record.
	dk, err := c.GenerateDataKey(ctx, "invoices", api.DataKeyRequest{Bytes: 32, Context: encContext})
	if err != nil {
		log.Fatal(err)
	}
	sealed, err := sealLocal(dk.Plaintext, []byte("the invoice body"), encContext)
	clear(dk.Plaintext) // the plaintext key is no longer needed
	if err != nil {
		log.Fatal(err)
	}
	rec := record{WrappedKey: dk.Ciphertext, Sealed: sealed}

	// Read path, possibly much later and after key rotations: the wrapped
	// key names its version, so any node can unwrap it.
	key, err := c.Decrypt(ctx, "invoices", rec.WrappedKey, encContext)
	switch {
	case errors.Is(err, api.ErrDecrypt):
		log.Fatal("wrapped key does not match this key or context")
	case err != nil:
		log.Fatal(err)
	}
	defer clear(key.Plaintext)
	data, err := openLocal(key.Plaintext, rec.Sealed, encContext)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", data)
}

func sealLocal(key, plaintext, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return gcm.Seal(nil, nil, plaintext, aad), nil
}

func openLocal(key, sealed, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, nil, sealed, aad)
}

// ExampleClient_CreateKey creates a key and encrypts with it at once: the
// client sends the create's index with the encrypt, so any node serving it
// has applied the create.
func ExampleClient_CreateKey() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Addrs: []string{"127.0.0.1:8200"}, Token: os.Getenv("KEYD_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: "payments", RotationPeriod: "720h"}); err != nil && !errors.Is(err, api.ErrExists) {
		log.Fatal(err)
	}
	ct, err := c.Encrypt(ctx, "payments", []byte("4111 1111 1111 1111"), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ct.Version)
}

// ExampleClient_Topology shows the topology the client keeps fresh in the
// background: Topology is a cheap local copy, Cluster asks a node.
func ExampleClient_Topology() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Region makes crypto calls prefer alive, unsealed nodes in eu-west.
	c, err := client.New(ctx, client.Config{
		Addrs:  []string{"keyd-1.example:8200"},
		Token:  os.Getenv("KEYD_TOKEN"),
		Region: "eu-west",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // also stops the background refresh
	for _, n := range c.Topology() {
		fmt.Printf("%s %s voter=%v leader=%v sealed=%v %s\n", n.ID, n.Region, n.Voter, n.Leader, n.Sealed, n.State)
	}
	if _, err := c.Cluster(ctx); errors.Is(err, api.ErrForbidden) {
		log.Print("token may not read the topology; the client falls back to /v1/sys/status")
	}
}

// ExampleClient_Join adds a fresh node to the cluster through the gossip
// addresses of existing members, then removes another one.
func ExampleClient_Join() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Addrs: []string{"keyd-1.example:8200"}, Token: os.Getenv("KEYD_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Join goes to the new node only: it is the one that joins.
	r, err := c.Join(ctx, "keyd-4.example:8200", []string{"keyd-1.example:7946", "keyd-2.example:7946"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("seeds contacted:", r.Contacted)
	// Remove is a write: it goes to the leader, retried with one request id.
	if err := c.Remove(ctx, "keyd-3"); err != nil {
		log.Fatal(err)
	}
}
