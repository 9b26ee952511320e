// burrow: the thin client. argv -> one IPC session -> exit code. Imports shared/ and msgpackr only.

process.stderr.write('burrow: no commands yet\n');
process.exitCode = 2;
