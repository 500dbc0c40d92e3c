package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keyd/keyd/api"
	"github.com/keyd/keyd/client"
)

// Client returns the drill's client (the configured token, every node).
func (e *Env) Client() *client.Client { return e.run.wl }

// ClockJump moves one node's wall clock while the load runs and checks
// that time-based decisions stay correct:
//
//   - the leader's clock jumps 31 days ahead: a key scheduled for
//     deletion with the shortest window (24h) is not deleted, and a token
//     created on that leader with a 1h TTL is not born expired;
//   - a follower's clock jumps 2 hours ahead: that token still
//     authenticates on that follower (asked directly, not routed);
//   - the clocks are restored and the deletion is cancelled.
//
// The target must implement ClockJumper, and its scheduler interval must
// be shorter than Timing.Hold for the deletion check to mean anything.
func ClockJump() Scenario {
	return func(ctx context.Context, e *Env) error {
		cj, ok := e.Cluster.(ClockJumper)
		if !ok {
			return errors.New("the target cannot jump a node's clock")
		}
		leader, err := e.Leader(ctx)
		if err != nil {
			return err
		}
		cl := e.Client()
		name := "drill-" + e.run.runID + "-deletion"
		call := func(fn func(context.Context) error) error {
			cctx, cancel := context.WithTimeout(ctx, e.Config.CallTimeout)
			defer cancel()
			return fn(cctx)
		}
		if err := call(func(c context.Context) error {
			_, err := cl.CreateKey(c, api.CreateKeyRequest{Name: name})
			return err
		}); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		if err := call(func(c context.Context) error {
			_, err := cl.ScheduleDeletion(c, name, 24*time.Hour)
			return err
		}); err != nil {
			return fmt.Errorf("schedule deletion: %w", err)
		}
		e.Note("leader %s clock +31 days", leader)
		defer func() { _ = cj.JumpClock(context.WithoutCancel(ctx), leader, 0) }()
		if err := cj.JumpClock(ctx, leader, 31*24*time.Hour); err != nil {
			return err
		}
		var tok *api.TokenInfo
		if err := call(func(c context.Context) error {
			var err error
			tok, err = cl.CreateToken(c, api.CreateTokenRequest{Name: "drill-clock", Policies: []string{"admin"}, TTL: "1h"})
			return err
		}); err != nil {
			return fmt.Errorf("create token: %w", err)
		}
		if d := time.Until(tok.ExpiresAt); d < 50*time.Minute || d > 70*time.Minute {
			return fmt.Errorf("token created on the jumped leader expires in %s, want about 1h", d.Round(time.Second))
		}
		// Several scheduler passes on the jumped leader.
		e.Sleep(ctx, holdOr(e, 2*time.Second))
		var info *api.KeyInfo
		if err := call(func(c context.Context) error {
			var err error
			info, err = cl.ReadKey(c, name, true)
			return err
		}); err != nil {
			return fmt.Errorf("key scheduled for deletion in 24h is gone after the leader's clock jumped: %w", err)
		}
		if info.State != api.KeyPendingDeletion {
			return fmt.Errorf("key %s is %s, want %s", name, info.State, api.KeyPendingDeletion)
		}
		e.Note("key %s still pending deletion after the jump", name)

		var follower NodeRef
		for _, n := range e.Cluster.Nodes() {
			if n.ID != leader {
				follower = n
				break
			}
		}
		e.Note("follower %s clock +2h", follower.ID)
		defer func() { _ = cj.JumpClock(context.WithoutCancel(ctx), follower.ID, 0) }()
		if err := cj.JumpClock(ctx, follower.ID, 2*time.Hour); err != nil {
			return err
		}
		code, err := directGet(ctx, e, follower.APIAddr, api.KeyPath(name), tok.Token)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("a 1h token is refused (HTTP %d) by %s after its clock jumped 2h", code, follower.ID)
		}
		e.Note("1h token still accepted on %s", follower.ID)
		if err := cj.JumpClock(ctx, follower.ID, 0); err != nil {
			return err
		}
		if err := cj.JumpClock(ctx, leader, 0); err != nil {
			return err
		}
		e.Note("clocks restored")
		return call(func(c context.Context) error {
			_, err := cl.CancelDeletion(c, name)
			return err
		})
	}
}

func holdOr(e *Env, d time.Duration) time.Duration {
	if e.Config.ClockHold > 0 {
		return e.Config.ClockHold
	}
	return d
}

// directGet sends one GET with token to the node at addr only and
// returns the status code.
func directGet(ctx context.Context, e *Env, addr, path, token string) (int, error) {
	cfg := *e
	cfg.Config.Token = token
	code, _, err := directCall(ctx, &cfg, http.MethodGet, addr, path, nil, e.Config.CallTimeout)
	if err != nil {
		return 0, fmt.Errorf("GET %s at %s: %w", path, addr, err)
	}
	return code, nil
}
