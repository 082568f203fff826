#!/usr/bin/env node
import { runCli } from '../dist/cli.js';

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  ...(process.stdout.isTTY ? { tty: (text) => process.stdout.write(text) } : {}),
});
