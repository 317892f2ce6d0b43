package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/explore"
	"github.com/ptlab/ptlab/kernel"
)

// exitError carries a process exit status other than 1. A nil err exits
// silently (dump diff's "the dumps differ", like diff(1)).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode is the status ptlab exits with after err.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

var setupOnce sync.Once

// setupCommands finishes the command tree once every file's init has added
// its commands: group commands reject unknown subcommands, flag values
// complete, bad flags are usage errors.
func setupCommands() {
	setupOnce.Do(func() {
		rejectUnknownSubcommands(rootCmd)
		registerCompletions(rootCmd)
		// A bad flag is a usage error, like an unknown command: status 2.
		rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
			return &exitError{code: 2, err: fmt.Errorf("%w (%s --help)", err, c.CommandPath())}
		})
		argsAreUsage(rootCmd)
	})
}

// argsAreUsage makes a wrong number of arguments a usage error (status 2)
// that points to the command's help.
func argsAreUsage(c *cobra.Command) {
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
	if c.Args == nil {
		return
	}
	check := c.Args
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("%s: %w (%s --help)", cmd.CommandPath(), err, cmd.CommandPath())}
		}
		return nil
	}
}

// rejectUnknownSubcommands makes every command that only groups others
// ("dump", "modules") fail on an argument that names no subcommand, instead of
// printing help and succeeding; without arguments it prints its help.
func rejectUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		rejectUnknownSubcommands(sub)
	}
	if c == rootCmd || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		var names []string
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				names = append(names, s.Name())
			}
		}
		msg := fmt.Sprintf("unknown command %q for %q (commands: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		if sug := cmd.SuggestionsFor(args[0]); len(sug) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", sug[0])
		}
		fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
		return &exitError{code: 2, err: errors.New(msg)}
	}
}

// usageError is a bad command line: exit status 2, as for unknown commands.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func fixedCompletion(values []string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

func cpuModelNames() []string {
	var n []string
	for k := range kernel.CPUModels {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// registerCompletions completes flag values wherever a flag of a known kind
// appears: presets, machines, CPU models, rodata=, scenario files.
func registerCompletions(c *cobra.Command) {
	for _, sub := range c.Commands() {
		registerCompletions(sub)
	}
	comp := map[string]cobra.CompletionFunc{
		"preset":    fixedCompletion(kernel.PresetNames()),
		"machine":   fixedCompletion(machineNames()),
		"cpus":      fixedCompletion(cpuModelNames()),
		"rodata":    fixedCompletion([]string{"on", "noalias", "off"}),
		"page-size": fixedCompletion([]string{"4K", "16K", "64K"}),
		"config":    yamlFiles,
		"import":    textFiles,
	}
	if c.Name() != "check" { // check's --scenario names built-in scenarios (check.go completes them)
		comp["scenario"] = yamlFiles
	} else {
		comp["scenario"] = fixedCompletion(append([]string{"all"}, explore.ScenarioNames()...))
		muts := []string{"none"}
		for _, m := range explore.Mutants {
			muts = append(muts, m.Name)
		}
		comp["mutant"] = fixedCompletion(muts)
	}
	for name, fn := range comp {
		if c.Flags().Lookup(name) == nil {
			continue
		}
		if _, ok := c.GetFlagCompletionFunc(name); ok {
			continue
		}
		_ = c.RegisterFlagCompletionFunc(name, fn)
	}
}

func yamlFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []string{"yaml", "yml", "json"}, cobra.ShellCompDirectiveFilterFileExt
}

func textFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// usageStatus gives cobra's own "unknown command" error (the root's) the
// usage status 2.
func usageStatus(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		return &exitError{code: 2, err: fmt.Errorf("%w (ptlab --help lists the commands)", err)}
	}
	return err
}

// Execute runs ptlab with os.Args and exits with its status.
func execute() int {
	setupCommands()
	err := usageStatus(rootCmd.Execute())
	var ee *exitError
	if err != nil && (!errors.As(err, &ee) || ee.err != nil) {
		fmt.Fprintln(os.Stderr, "ptlab:", err)
	}
	return exitCode(err)
}
