package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// metricsListenAddr resolves Config.MetricsAddr: a bare port ("9102" or
// ":9102") listens on 127.0.0.1 only, so the unauthenticated plain-HTTP
// endpoint is not exposed by accident; a host:port is used as given.
func metricsListenAddr(addr string) string {
	if !strings.Contains(addr, ":") {
		return "127.0.0.1:" + addr
	}
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	return addr
}

// startMetricsListener serves the metrics, and nothing else, over plain
// HTTP on Config.MetricsListener or MetricsAddr, when one is set. The
// server stops when the node's goroutine group does (Close).
func (n *Node) startMetricsListener() error {
	ln := n.cfg.MetricsListener
	if ln == nil {
		if n.cfg.MetricsAddr == "" {
			return nil
		}
		var err error
		addr := metricsListenAddr(n.cfg.MetricsAddr)
		if ln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("node: metrics listen %s: %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	h := n.metrics.Handler()
	mux.Handle("GET /metrics", h)
	mux.Handle("GET /v1/sys/metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	n.life.group.Go(func(context.Context) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped", "err", err)
		}
	})
	n.life.group.Go(func(ctx context.Context) {
		<-ctx.Done()
		_ = srv.Close()
	})
	n.log.Info("metrics listener", "addr", ln.Addr().String())
	return nil
}
