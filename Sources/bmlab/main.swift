import ArgumentParser
import Foundation
import BMCore

// Line-buffered standard output even into a file or a pipe (Slurm .out files, sweep
// logs, notebooks): every line is there as soon as it is printed.
Machine.lineBufferStandardOutput()
BMLabCommand.main()
