package policy

// globMatch reports whether name matches pattern, where '*' matches any
// run of bytes (including none) and '?' exactly one byte; every other
// byte matches itself. Key names are ASCII, so bytes are characters.
//
// It is the classic linear-space matcher: on a mismatch it backtracks
// only to the most recent '*', letting that star swallow one more byte.
// Backtracking to older stars is never needed, because a later star can
// absorb whatever an earlier one would have. Worst case O(len(pattern) *
// len(name)); it never allocates.
func globMatch(pattern, name string) bool {
	p, n := 0, 0
	star, resume := -1, 0 // position after the last '*', and where its run ends
	for n < len(name) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				star, resume = p+1, n
				p++
				continue
			case '?':
				p++
				n++
				continue
			default:
				if c == name[n] {
					p++
					n++
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		resume++
		p, n = star, resume
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
