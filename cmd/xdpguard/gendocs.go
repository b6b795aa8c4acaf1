package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDocsCmd writes the man pages and shell completions that packages
// ship (make deb). Hidden: it is for packagers, not operators.
func newGenDocsCmd() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gen-docs --man DIR --completions DIR",
		Short:  "Write man pages (section 1) and bash, zsh and fish completions",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				header := &doc.GenManHeader{Title: "XDPGUARD", Section: "1", Source: "xdpguard " + version, Manual: "xdpguard manual"}
				root.DisableAutoGenTag = true // reproducible pages: no generation date
				if err := doc.GenManTree(root, header, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if complDir != "" {
				if err := os.MkdirAll(complDir, 0o755); err != nil {
					return err
				}
				for file, gen := range map[string]func(string) error{
					"xdpguard.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
					"_xdpguard":     root.GenZshCompletionFile,
					"xdpguard.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
				} {
					if err := gen(filepath.Join(complDir, file)); err != nil {
						return fmt.Errorf("completion %s: %w", file, err)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "directory for the man pages")
	cmd.Flags().StringVar(&complDir, "completions", "", "directory for the completion scripts")
	return cmd
}
