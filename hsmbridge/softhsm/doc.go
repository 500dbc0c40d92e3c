// Package softhsm prepares SoftHSM2 tokens for dev mode (`keyd dev -hsm
// softhsm2`) and tests: it writes a softhsm2.conf and initialises tokens
// with softhsm2-util. It never opens the PKCS#11 module itself and needs no
// cgo.
//
// SoftHSM2 reads SOFTHSM2_CONF once, when the module is initialised, and
// lists only the tokens that existed then. So a process must, in order:
// WriteConfig once, InitToken every token it will use, set SOFTHSM2_CONF to
// the returned path (ConfEnv), and only then open the first PKCS#11 HSM.
// All tokens of one process live under the same configuration.
package softhsm
