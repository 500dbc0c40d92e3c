package drill

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
)

// keyState is the model's state of one key.
type keyState struct {
	Exists  bool
	Version uint32
}

type modelIn struct {
	Kind string
	Key  string
}

type modelOut struct {
	Pending bool // unknown outcome
	Out     string
	Version uint32
}

// keyModel is the sequential specification of key metadata: create makes
// a key at version 1 or fails with exists; rotate adds one version and
// replies the new latest version, or fails with not found; a consistent
// read replies the latest version or not found. An operation with an
// unknown outcome may take effect (or not, by being linearized last).
var keyModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			k := op.Input.(modelIn).Key
			if _, ok := by[k]; !ok {
				order = append(order, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() interface{} { return keyState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s := state.(keyState)
		in := input.(modelIn)
		out := output.(modelOut)
		switch in.Kind {
		case kindCreate:
			if out.Pending {
				if !s.Exists {
					return true, keyState{Exists: true, Version: 1}
				}
				return true, s
			}
			switch out.Out {
			case outOK:
				return !s.Exists && out.Version == 1, keyState{Exists: true, Version: 1}
			case outExists:
				return s.Exists, s
			}
		case kindRotate:
			if out.Pending {
				if s.Exists {
					return true, keyState{Exists: true, Version: s.Version + 1}
				}
				return true, s
			}
			switch out.Out {
			case outOK:
				return s.Exists && out.Version == s.Version+1, keyState{Exists: true, Version: out.Version}
			case outNotFound:
				return !s.Exists, s
			}
		case kindRead:
			switch out.Out {
			case outOK:
				return s.Exists && out.Version == s.Version, s
			case outNotFound:
				return !s.Exists, s
			}
		}
		return false, s
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(modelIn), output.(modelOut)
		if out.Pending {
			return fmt.Sprintf("%s(%s) -> ?", in.Kind, in.Key)
		}
		return fmt.Sprintf("%s(%s) -> %s v%d", in.Kind, in.Key, out.Out, out.Version)
	},
	DescribeState: func(state interface{}) string {
		s := state.(keyState)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("v%d", s.Version)
	},
}

// toPorcupine converts the metadata operations of a history: acknowledged
// ones, definite refusals, and unknown writes as pending operations
// (returning after everything, math.MaxInt64). Failed reads are left out.
func toPorcupine(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Kind != kindCreate && op.Kind != kindRotate && op.Kind != kindRead {
			continue
		}
		o := porcupine.Operation{ClientId: max(op.Worker, 0), Input: modelIn{Kind: op.Kind, Key: op.Key}, Call: int64(op.Call)}
		switch {
		case op.Status == statusUnknown:
			o.Output, o.Return = modelOut{Pending: true}, math.MaxInt64
		case op.Out == "":
			continue // a read that failed: no effect, nothing observed
		default:
			o.Output, o.Return = modelOut{Out: op.Out, Version: op.Version}, int64(op.Return)
		}
		out = append(out, o)
	}
	return out
}

// checkLinearizable runs porcupine; the verdict is "ok", "illegal" or
// "unknown" (timed out).
func checkLinearizable(ops []Op, timeout time.Duration) (string, int) {
	h := toPorcupine(ops)
	switch porcupine.CheckOperationsTimeout(keyModel, h, timeout) {
	case porcupine.Ok:
		return "ok", len(h)
	case porcupine.Illegal:
		return "illegal", len(h)
	default:
		return "unknown", len(h)
	}
}
