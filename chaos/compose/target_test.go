package compose

import (
	"slices"
	"testing"
)

func TestDropRules(t *testing.T) {
	ip := func(id string) string { return "10.0.0." + id[1:] }
	groups := [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5"}}
	got := dropRules("n1", groups, ip)
	want := []string{
		"-A INPUT -s 10.0.0.3 -j DROP", "-A OUTPUT -d 10.0.0.3 -j DROP",
		"-A INPUT -s 10.0.0.4 -j DROP", "-A OUTPUT -d 10.0.0.4 -j DROP",
		"-A INPUT -s 10.0.0.5 -j DROP", "-A OUTPUT -d 10.0.0.5 -j DROP",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("n1 rules:\n got %q\nwant %q", got, want)
	}
	// The lone region is cut from all four others, and never from itself.
	if got := dropRules("n5", groups, ip); len(got) != 8 || slices.Contains(got, "-A INPUT -s 10.0.0.5 -j DROP") {
		t.Fatalf("n5 rules: %q", got)
	}
	// A node outside every group (a spare started later) is not cut.
	if got := dropRules("n6", groups, ip); got != nil {
		t.Fatalf("n6 rules: %q, want none", got)
	}
	// No partition: nothing to drop.
	if got := dropRules("n1", [][]string{{"n1", "n2", "n3"}}, ip); got != nil {
		t.Fatalf("one group: %q, want none", got)
	}
}

func TestHostAddrAndBridgeIP(t *testing.T) {
	tg := &Target{opt: Options{NetPrefix: "172.28.9", PortPrefix: "195"}}
	if got := tg.hostAddr("n3"); got != "127.0.0.1:19530" {
		t.Fatalf("hostAddr(n3) = %s", got)
	}
	if got := tg.bridgeIP("n7"); got != "172.28.9.17" {
		t.Fatalf("bridgeIP(n7) = %s", got)
	}
}

// Heal is restoreScript(nil): it must empty both chains, or a healed
// partition silently stays (iptables-restore --noflush does not flush a
// built-in chain that is only declared).
func TestRestoreScriptFlushes(t *testing.T) {
	if got, want := restoreScript(nil), "*filter\n-F INPUT\n-F OUTPUT\nCOMMIT\n"; got != want {
		t.Fatalf("heal script %q, want %q", got, want)
	}
	got := restoreScript([]string{"-A INPUT -s 10.0.0.3 -j DROP"})
	if want := "*filter\n-F INPUT\n-F OUTPUT\n-A INPUT -s 10.0.0.3 -j DROP\nCOMMIT\n"; got != want {
		t.Fatalf("cut script %q, want %q", got, want)
	}
}
