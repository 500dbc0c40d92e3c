package httpapi

import "testing"

// TestTransitRotatePeriodNoOverflow: auto_rotate_period given as a string
// of seconds was multiplied into a time.Duration unchecked, so a huge
// period (meant as "practically never") wrapped around to a short one:
// "18446744074" seconds became 290ms. Out-of-range periods are refused,
// as they already were when given as a JSON number.
func TestTransitRotatePeriodNoOverflow(t *testing.T) {
	t.Parallel()
	for _, v := range []any{"18446744074", "9223372036854775807", "3155760001", "-18446744074", float64(18446744074)} {
		if p, _, err := parseRotatePeriod(v); err == nil {
			t.Errorf("auto_rotate_period %v: accepted as %q", v, p)
		}
	}
	if p, _, err := parseRotatePeriod("3600"); err != nil || p != "1h0m0s" {
		t.Fatalf("3600: %q %v", p, err)
	}
}
