package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyd/keyd/fsm"
)

// runScheduler rotates keys whose rotation period has passed and deletes
// keys whose deletion time has come. Only the unsealed leader acts. A
// rotation names the version it rotates from, so if two leaders race (an
// old one that has not yet noticed it was deposed), the FSM applies only
// the first: a key is rotated once per period even across leader changes.
func (n *Node) runScheduler(ctx context.Context) {
	t := time.NewTicker(n.cfg.SchedulerInterval)
	defer t.Stop()
	var cur dueCursors
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n.IsLeader() && n.keys.unsealed() {
				n.schedulePass(ctx, &cur)
			}
		}
	}
}

// dueCursors are where the scheduler's passes over the due keys resume,
// so more than fsm.MaxDuePerPass keys that stay due (their action keeps
// failing) do not starve the keys after them. Owned by runScheduler.
type dueCursors struct{ schedule, retention fsm.DueCursor }

func (n *Node) schedulePass(ctx context.Context, cur *dueCursors) {
	now := n.clock.now().UTC()
	n.purgeTokens(ctx, now)
	n.retentionPass(ctx, n.now(), &cur.retention)
	// The FSM's index of next events yields only the keys with something
	// due (at most fsm.MaxDuePerPass per pass), whatever the number of keys.
	recs, next, err := n.fsm.DueKeysFrom(now, cur.schedule, fsm.MaxDuePerPass)
	cur.schedule = next
	if err != nil {
		n.log.Warn("scheduler could not read the keys due", "err", err)
		return
	}
	var due []*fsm.KeyRecord
	for _, rec := range recs {
		if rec.RotationDue(now) || (rec.State == fsm.StatePendingDeletion && !now.Before(rec.DeletionAt)) {
			due = append(due, rec)
		}
	}
	for _, rec := range due {
		if ctx.Err() != nil {
			return
		}
		var err error
		if rec.State == fsm.StatePendingDeletion {
			_, err = n.apply(ctx, &fsm.DeleteKey{Meta: fsm.Meta{At: now}, Name: rec.Name, DeleteAt: rec.DeletionAt})
			if err == nil {
				n.log.Info("key deleted after its pending window", "key", rec.Name)
			}
		} else {
			rid := fmt.Sprintf("auto-rotate/%s/%d", rec.Name, rec.Latest())
			_, err = n.rotateOnce(ctx, rid, rec.Name, rec.Latest())
			if err == nil {
				n.log.Info("key rotated automatically", "key", rec.Name, "from_version", rec.Latest())
			}
		}
		if err != nil && !errors.Is(err, fsm.ErrConflict) {
			n.log.Warn("scheduled key change failed", "key", rec.Name, "err", err)
		}
	}
}
