// Command compose-check validates Compose files the way `docker compose config` does, with
// no Docker engine: it loads them with compose-go, the library Docker Compose v2 is built
// on, which checks the YAML, the Compose Specification's JSON schema, ${VAR} interpolation,
// extension merges and the references between services, networks and volumes.
//
// One rule is stricter than Compose v2 and matches Compose v1 (docker-compose 1.29, which
// Debian still ships): a "$" must be followed by "$", a variable name or "{". v2 leaves
// "$(...)" as text, v1 fails with "Invalid interpolation format"; "$$(...)" works in both.
//
// Usage: compose-check [-q] [-v2-interpolation] FILE...
//
// Exit 0 and (without -q) the resolved model as YAML when the files are valid; exit 1 with
// compose-go's error message otherwise; exit 2 on a usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
)

// v1Pattern is compose-go's DefaultPattern with the "invalid" branch moved out of the
// braces, as in Compose v1 (Python's string.Template): "$" followed by anything but "$",
// a name or a well-formed "{...}" is an error instead of text.
var v1Pattern = regexp.MustCompile(
	`\$(?i:(?P<escaped>\$)|(?P<named>[_a-z][_a-z0-9]*)|{(?P<braced>[_a-z][_a-z0-9]*(?::?[-+?](.*))?)}|(?P<invalid>))`,
)

func substituteV1(text string, mapping template.Mapping) (string, error) {
	return template.SubstituteWith(text, mapping, v1Pattern)
}

func main() {
	quiet := flag.Bool("q", false, "only validate, print nothing")
	v2Only := flag.Bool("v2-interpolation", false, "accept what Compose v2 accepts (\"$(\" as text)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-q] [-v2-interpolation] FILE...\n"+
			"Validates Compose files like `docker compose config` (compose-go), no engine needed.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	options := []cli.ProjectOptionsFn{
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithConsistency(true),
		cli.WithDefaultProfiles(),
	}
	if !*v2Only {
		options = append(options, cli.WithLoadOptions(func(o *loader.Options) {
			if o.Interpolate != nil {
				o.Interpolate.Substitute = substituteV1
			}
		}))
	}
	projectOptions, err := cli.NewProjectOptions(flag.Args(), options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := projectOptions.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *quiet {
		return
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
