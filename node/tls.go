package node

import (
	"crypto/tls"
	"net"
)

func newTLSListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }
