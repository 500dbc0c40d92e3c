package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/keyd/keyd/api"
)

// Default status codes of GET /v1/sys/health, as load balancers in front
// of Vault expect them. Each is overridable by the query parameter of the
// same name (activecode, standbycode, sealedcode, uninitcode);
// standbyok=true answers an unsealed follower with the active code.
const (
	healthActive  = http.StatusOK                 // the leader
	healthStandby = http.StatusTooManyRequests    // an unsealed follower
	healthSealed  = http.StatusServiceUnavailable // initialized, sealed
	healthUninit  = http.StatusNotImplemented     // not initialized
)

// healthStatus picks the status code of a health reply from the node's
// state and the query. A malformed parameter is a bad_request: a load
// balancer misconfigured that way should fail loudly, not route wrongly.
func healthStatus(q url.Values, h *api.Health) (int, error) {
	code := func(name string, def int) (int, error) {
		v, ok := q[name]
		if !ok || len(v) == 0 {
			return def, nil
		}
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 200 || n > 599 {
			return 0, &api.Error{Code: api.CodeBadRequest, Message: name + " must be an HTTP status code between 200 and 599"}
		}
		return n, nil
	}
	active, err := code("activecode", healthActive)
	if err != nil {
		return 0, err
	}
	standby, err := code("standbycode", healthStandby)
	if err != nil {
		return 0, err
	}
	sealed, err := code("sealedcode", healthSealed)
	if err != nil {
		return 0, err
	}
	uninit, err := code("uninitcode", healthUninit)
	if err != nil {
		return 0, err
	}
	standbyOK := false
	if v, ok := q["standbyok"]; ok {
		s := ""
		if len(v) > 0 {
			s = v[0]
		}
		if s == "" {
			standbyOK = true // "?standbyok" alone, as Vault reads it
		} else if standbyOK, err = strconv.ParseBool(s); err != nil {
			return 0, &api.Error{Code: api.CodeBadRequest, Message: "standbyok must be true or false"}
		}
	}
	switch {
	case !h.Initialized:
		return uninit, nil
	case h.Sealed:
		return sealed, nil
	case h.Leader, standbyOK:
		return active, nil
	}
	return standby, nil
}
