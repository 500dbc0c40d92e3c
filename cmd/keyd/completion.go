package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionProbe is an argument no command accepts: a command group
// answers it with "unknown ... subcommand (want one of a, b, c)", which is
// how completion learns the subcommands without a second list to keep in
// step.
const completionProbe = "__keyd_completion_probe__"

// cmdTree is the command tree for completion: top-level commands and, for
// groups, their subcommands (nested groups under "group sub").
type cmdTree struct {
	top  []string
	subs map[string][]string // "key" -> [create ...], "operator rotate-root" -> [...]
}

// commandTree builds the tree from the command table, probing each
// command with completionProbe through a silent cli with a cancelled
// context: a group rejects the probe before doing anything, and any other
// command rejects it as an unexpected argument before touching the network.
func (c *cli) commandTree() cmdTree {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	quiet := &cli{ctx: ctx, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	t := cmdTree{subs: map[string][]string{}}
	cmds := quiet.commands()
	for name := range cmds {
		t.top = append(t.top, name)
	}
	t.top = append(t.top, "help")
	slices.Sort(t.top)
	for _, name := range t.top {
		cmd, ok := cmds[name]
		if !ok || name == "completion" {
			continue
		}
		subs := probeSubs(func() error { return cmd([]string{completionProbe}) })
		if len(subs) == 0 {
			continue
		}
		t.subs[name] = subs
		for _, sub := range subs {
			nested := probeSubs(func() error { return cmd([]string{sub, completionProbe}) })
			if len(nested) > 0 {
				t.subs[name+" "+sub] = nested
			}
		}
	}
	return t
}

// probeSubs runs a probe and returns the subcommands its usage error
// lists, or nil.
func probeSubs(probe func() error) []string {
	var ue *usageError
	if err := probe(); !errors.As(err, &ue) || !strings.Contains(ue.msg, completionProbe) {
		return nil
	}
	_, list, ok := strings.Cut(ue.msg, "(want one of ")
	if !ok {
		return nil
	}
	list = strings.TrimSuffix(list, ")")
	var out []string
	for _, s := range strings.Split(list, ", ") {
		if s = strings.TrimSpace(s); s != "" && !strings.ContainsAny(s, " '\"$`\\") {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

const completionHelp = `Usage: keyd completion bash|zsh|fish

Print a shell completion script for keyd's commands and subcommands.

  bash:  source <(keyd completion bash)     # or save it under /etc/bash_completion.d/keyd
  zsh:   keyd completion zsh > "${fpath[1]}/_keyd"   # then restart zsh
  fish:  keyd completion fish > ~/.config/fish/completions/keyd.fish
`

func (c *cli) completion(args []string) error {
	if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(c.stdout, completionHelp)
			return nil
		}
	}
	if len(args) != 1 {
		fmt.Fprint(c.stderr, completionHelp)
		return errUsageShown
	}
	t := c.commandTree()
	switch args[0] {
	case "bash":
		return writeBash(c.stdout, t)
	case "zsh":
		return writeZsh(c.stdout, t)
	case "fish":
		return writeFish(c.stdout, t)
	}
	return usagef("completion: unknown shell %q (want bash, zsh or fish)", args[0])
}

// groups returns the keys of t.subs with one word (depth 1) or two.
func (t cmdTree) groups(depth int) []string {
	var out []string
	for k := range t.subs {
		if strings.Count(k, " ")+1 == depth {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func writeBash(w io.Writer, t cmdTree) error {
	var b strings.Builder
	b.WriteString("# bash completion for keyd (keyd completion bash)\n_keyd() {\n")
	b.WriteString("  local cur=${COMP_WORDS[COMP_CWORD]}\n  local words=\"\"\n")
	b.WriteString("  case $COMP_CWORD in\n")
	fmt.Fprintf(&b, "    1) words=%q ;;\n", strings.Join(t.top, " "))
	b.WriteString("    2)\n      case ${COMP_WORDS[1]} in\n")
	for _, g := range t.groups(1) {
		fmt.Fprintf(&b, "        %s) words=%q ;;\n", g, strings.Join(t.subs[g], " "))
	}
	b.WriteString("      esac ;;\n    3)\n      case \"${COMP_WORDS[1]} ${COMP_WORDS[2]}\" in\n")
	for _, g := range t.groups(2) {
		fmt.Fprintf(&b, "        %q) words=%q ;;\n", g, strings.Join(t.subs[g], " "))
	}
	b.WriteString("      esac ;;\n  esac\n")
	b.WriteString("  if [ -n \"$words\" ]; then\n    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n  else\n    COMPREPLY=($(compgen -f -- \"$cur\"))\n  fi\n}\n")
	b.WriteString("complete -o default -F _keyd keyd\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeZsh(w io.Writer, t cmdTree) error {
	var b strings.Builder
	b.WriteString("#compdef keyd\n# zsh completion for keyd (keyd completion zsh)\n_keyd() {\n  local -a subs\n  case $CURRENT in\n")
	fmt.Fprintf(&b, "    2) subs=(%s) ;;\n", strings.Join(t.top, " "))
	b.WriteString("    3)\n      case $words[2] in\n")
	for _, g := range t.groups(1) {
		fmt.Fprintf(&b, "        %s) subs=(%s) ;;\n", g, strings.Join(t.subs[g], " "))
	}
	b.WriteString("      esac ;;\n    4)\n      case \"$words[2] $words[3]\" in\n")
	for _, g := range t.groups(2) {
		fmt.Fprintf(&b, "        %q) subs=(%s) ;;\n", g, strings.Join(t.subs[g], " "))
	}
	b.WriteString("      esac ;;\n  esac\n  if (( ${#subs} )); then\n    compadd -a subs\n  else\n    _files\n  fi\n}\n")
	b.WriteString("compdef _keyd keyd\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFish(w io.Writer, t cmdTree) error {
	var b strings.Builder
	b.WriteString("# fish completion for keyd (keyd completion fish)\n")
	fmt.Fprintf(&b, "complete -c keyd -f -n '__fish_use_subcommand' -a '%s'\n", strings.Join(t.top, " "))
	for _, g := range t.groups(1) {
		// Offer the group's subcommands until one of them is typed.
		fmt.Fprintf(&b, "complete -c keyd -f -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a '%s'\n",
			g, strings.Join(t.subs[g], " "), strings.Join(t.subs[g], " "))
	}
	for _, g := range t.groups(2) {
		_, sub, _ := strings.Cut(g, " ")
		fmt.Fprintf(&b, "complete -c keyd -f -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a '%s'\n",
			sub, strings.Join(t.subs[g], " "), strings.Join(t.subs[g], " "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
