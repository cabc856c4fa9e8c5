#!/usr/bin/env perl
# Local job backend with Kaldi's run.pl interface.
#
#   utils/run.pl [options] [VAR=START:END] LOGFILE COMMAND...
#
# Runs COMMAND once, or once per index of the range VAR=START:END (VAR may be
# any name: JOB=1:4, SPLIT=1:3; VAR=N alone means the single index N).  Every
# occurrence of VAR in LOGFILE and in the command words is replaced by the
# index.  As in Kaldi, a single COMMAND word is shell code, run by "bash -c"
# as it stands (run.pl log "a | b > out"); several words are a command and
# its arguments, each reaching it exactly as given (quoted for bash, so a
# path holding spaces or ; & | $ ` ' " ( ) * stays one literal word).  The job's stdout and stderr
# go to its log, whose directory is created; the log starts with
# "# COMMAND" and "# Started at DATE" and ends with
# "# Accounting: time=SECONDS threads=N" and
# "# Ended (code RC) at DATE, elapsed time SECONDS seconds".
#
# Options:
#   --max-jobs-run N   run at most N jobs at once (default, as Kaldi's run.pl:
#                      the number of CPUs this process may use (nproc), or of
#                      GPUs (nvidia-smi -L) with --gpu N > 0; raised to the
#                      number of jobs when that is less than 1.4 times it)
#   --pick WHICH       which jobs of the range to run, judged by each job's
#                      existing log (Kaldi's run.pl): all (the default);
#                      failed: every job but those whose log ends
#                      "# Ended (code 0)" (they are kept, and count as done);
#                      incomplete (or none): only jobs with no log or a log
#                      without its "# Ended" trailer; a failed job is not run
#                      again and still counts as failed
#   --num-threads N    threads per job; only reported in the accounting line
#                      (default: 1)
#   --gpu N, --mem X, --time T, --config FILE
#                      cluster options, accepted and ignored by this local
#                      backend so that one command line works with every one
#   -h, --help         show this message
# Exits 0 when every job succeeded; otherwise 1, naming each failed log on
# stderr.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(setpgid);
use FindBin qw($RealBin);
use lib $RealBin;
use JobCommon qw(command_of now option_value parse_job_args substitute report_failed);

my $me = 'run.pl';

sub usage {
    return <<"END";
Usage: utils/run.pl [options] [VAR=START:END] LOGFILE COMMAND...
 e.g.: utils/run.pl JOB=1:4 exp/x/log/decode.JOB.log local/decode.py --part JOB
Options:
  --max-jobs-run N   run at most N jobs at once (default: the CPU count, nproc;
                     with --gpu N > 0 the GPU count)
  --pick WHICH       all (default), failed (re-run all but the jobs whose log
                     ends "# Ended (code 0)"), incomplete or none (run only
                     jobs without a finished log)
  --num-threads N    threads per job, reported in the accounting line (default: 1)
  --gpu N, --mem X, --time T, --config FILE
                     cluster options, accepted and ignored by this local backend
  -h, --help         show this message
Every occurrence of VAR in LOGFILE and COMMAND is replaced by the job index.
END
}

sub usage_error {
    my ($msg) = @_;
    print STDERR "$me: ERROR: $msg\n", usage();
    exit 1;
}

my $max_jobs_run;
my $num_threads = 1;
my $gpu = 0;
my $pick = 'all';
my %ignored = map { $_ => 1 } qw(--mem --time --config);

while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    if ($opt eq '-h' || $opt eq '--help') {
        print usage();
        exit 0;
    }
    ($opt, my $value) = option_value($opt, \@ARGV, \&usage_error);
    if ($opt eq '--max-jobs-run') {
        usage_error("--max-jobs-run needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs_run = $value;
    } elsif ($opt eq '--pick') {
        usage_error("--pick needs all, failed, incomplete or none, got '$value'")
            unless $value =~ /^(all|failed|incomplete|none)$/;
        $pick = $value;
    } elsif ($opt eq '--gpu') {
        usage_error("--gpu needs a whole number, got '$value'") unless $value =~ /^\d+$/;
        $gpu = $value;
    } elsif ($opt eq '--num-threads') {
        usage_error("--num-threads needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
        $num_threads = $value;
    } elsif (!$ignored{$opt}) {
        usage_error("unknown option $opt");
    }
}

my $job = parse_job_args(\@ARGV, \&usage_error);
my ($var, $first, $last, $log_pattern) = @$job{qw(var first last log_pattern)};
my @words = @{ $job->{words} };

# Runs one job (called in a child of the main process): writes the log header,
# runs the command with its output appended to the log, writes the trailer.
# Returns the command's exit code (128+N when killed by signal N).
sub run_job {
    my ($log, $cmd) = @_;
    my $dir = dirname($log);
    eval { make_path($dir) unless -d $dir; 1 } or do {
        print STDERR "$me: cannot create directory $dir for log $log: $@";
        return 1;
    };
    open(my $fh, '>', $log) or do {
        print STDERR "$me: cannot write log $log: $!\n";
        return 1;
    };
    my $start = time();
    (my $header = $cmd) =~ s/\n/\n# /g;
    print $fh "# $header\n# Started at " . now() . "\n";
    close($fh);

    my $pid = fork();
    if (!defined $pid) {
        print STDERR "$me: cannot fork: $!\n";
        return 1;
    }
    if ($pid == 0) {
        setpgid(0, 0);    # own process group, so that a signal reaches a whole pipeline
        open(STDOUT, '>>', $log) or die "$me: cannot append to $log: $!\n";
        open(STDERR, '>&', \*STDOUT) or die "$me: cannot redirect stderr to $log: $!\n";
        exec('bash', '-c', $cmd) or die "$me: cannot run bash: $!\n";
    }
    setpgid($pid, $pid);    # also here, so that no signal can come before it
    # Pass termination signals on to the job's process group, then still
    # write the trailer.
    for my $sig (qw(TERM INT HUP)) {
        $SIG{$sig} = sub { kill $sig, -$pid };
    }
    my $waited;
    do { $waited = waitpid($pid, 0) } while ($waited == -1 && $!{EINTR});
    my $status = $?;
    my $rc = ($status & 127) ? 128 + ($status & 127) : $status >> 8;
    my $elapsed = time() - $start;

    open($fh, '>>', $log) or do {
        print STDERR "$me: cannot append to log $log: $!\n";
        return $rc || 1;
    };
    print $fh "# Accounting: time=$elapsed threads=$num_threads\n";
    print $fh "# Ended (code $rc) at " . now() . ", elapsed time $elapsed seconds\n";
    close($fh);
    return $rc;
}

my @indices = defined $var ? ($first .. $last) : (undef);

# Kaldi's default: as many jobs at once as there are CPUs (GPUs for a GPU
# job), or all of them when there are only a few more jobs than that.
sub count_lines_of {
    my @cmd = @_;
    open(my $p, '-|', @cmd) or return 0;
    my @lines = <$p>;
    close($p);
    return $? == 0 ? scalar @lines : 0;
}
if (!defined $max_jobs_run) {
    if ($gpu > 0) {
        $max_jobs_run = count_lines_of('nvidia-smi', '-L') || 1;
    } else {
        my $n = 0;
        # GNU nproc honours OMP_NUM_THREADS (path.sh sets it to 1 for each
        # job's torch): the CPUs are counted without it, or every array would
        # run one job at a time
        local %ENV = %ENV;
        delete @ENV{qw(OMP_NUM_THREADS OMP_THREAD_LIMIT)};
        if (open(my $p, '-|', 'nproc')) {
            my $out = <$p>;
            close($p);
            $n = $1 if defined $out && $? == 0 && $out =~ /^\s*([1-9]\d*)\s*$/;
        }
        $max_jobs_run = $n || 32;
        my $jobs = scalar @indices;
        $max_jobs_run = $jobs if $jobs > $max_jobs_run && $jobs < 1.4 * $max_jobs_run;
    }
}

# --pick: what a job's existing log says ('done', 'failed', or 'incomplete'
# for no log or one without its trailer).
sub log_state {
    my ($log) = @_;
    open(my $fh, '<', $log) or return 'incomplete';
    my $ended;
    while (my $line = <$fh>) {
        $ended = $1 if $line =~ /^# Ended \(code (\d+)/;
    }
    close($fh);
    return 'incomplete' unless defined $ended;
    return $ended == 0 ? 'done' : 'failed';
}

my %running;    # pid => index into @indices
my @codes;      # wait status per index (0: the job succeeded)
my $stop_signal;
for my $sig (qw(TERM INT HUP)) {
    $SIG{$sig} = sub { $stop_signal = $sig; kill $sig, keys %running };
}

sub reap_one {
    my $pid = wait();
    if ($pid == -1) {    # no children left: nothing more to wait for
        %running = ();
        return;
    }
    my $i = delete $running{$pid};
    $codes[$i] = $? if defined $i;
}

for my $i (0 .. $#indices) {
    last if defined $stop_signal;
    reap_one() while keys(%running) >= $max_jobs_run;
    last if defined $stop_signal;
    my $index = $indices[$i];
    my $log = substitute($log_pattern, $var, $index);
    if ($pick ne 'all') {
        my $state = log_state($log);
        if ($state eq 'done' || ($state eq 'failed' && $pick ne 'failed')) {
            $codes[$i] = $state eq 'done' ? 0 : 1;    # kept as it is, not run
            next;
        }
    }
    my $cmd = command_of(map { substitute($_, $var, $index) } @words);
    my $pid = fork();
    die "$me: cannot fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
        exit(run_job($log, $cmd) ? 1 : 0);
    }
    $running{$pid} = $i;
}
reap_one() while %running;

my @failed;
for my $i (0 .. $#indices) {
    next if defined $codes[$i] && $codes[$i] == 0;
    my $index = $indices[$i];
    push @failed, substitute($log_pattern, $var, $index);
}
if (defined $stop_signal) {
    print STDERR "$me: stopped by SIG$stop_signal; see the logs in " . dirname($log_pattern) . "\n";
    exit 1;
}
exit 1 if report_failed($me, $var, \@failed, scalar @indices);
exit 0;
