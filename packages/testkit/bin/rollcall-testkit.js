#!/usr/bin/env node
// `npx rollcall-testkit install-servers`: installs the servers the testkit's harnesses start.
import { runCli } from '../dist/cli.js';

process.exitCode = runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
});
