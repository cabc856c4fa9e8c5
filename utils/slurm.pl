#!/usr/bin/env perl
# Cluster job backends with Kaldi's run.pl interface: Slurm (called as
# slurm.pl) and Grid Engine (called as queue.pl, a link to this file).
#
#   utils/slurm.pl [options] [VAR=START:END] LOGFILE COMMAND...
#   utils/queue.pl [options] [VAR=START:END] LOGFILE COMMAND...
#
# Same contract as utils/run.pl: COMMAND runs once, or once per index of
# VAR=START:END with VAR replaced by the index in LOGFILE and in the command
# words (joined as run.pl joins them and run by "bash -c"); each job's log gets
# the header "# COMMAND", "# Started at DATE" and the trailer
# "# Accounting: time=SECONDS threads=N", "# Ended (code RC) at DATE, elapsed
# time SECONDS seconds"; the call exits 1 naming the failed logs.
#
# How it works: a job script is written to DIR/q/ (DIR: the log's directory)
# and submitted once, as an array when there is a range (sbatch --array=A-B%M,
# qsub -t A-B -tc M). Array task T runs job index T (index+1 for a range
# starting at 0, which Grid Engine cannot number). Each task writes its log
# and then DIR/q/NAME.done holding the exit code (NAME: the log's file name
# without .log, VAR replaced by T, or .T appended); the scheduler's own
# output goes to DIR/q/NAME.out. This process waits by looking for the done
# files every second and asks the scheduler (squeue/qstat) only every 10
# seconds, to notice tasks that ended without writing one (killed, node lost).
# Jobs run in the submitting shell's working directory and environment (as
# with run.pl): the config's submit flags export it, and the job script sets
# PATH itself, which login shells on the nodes would otherwise reset.
#
# Job options become scheduler flags through a config file (Kaldi's format):
#   command sbatch --export=ALL          the submit command and fixed flags
#   option mem=* --mem-per-cpu=$0        --mem X adds these flags ($0: X)
#   option gpu=0                         --gpu 0 adds nothing (exact value wins)
#   default gpu=0                        value used when the option is not given
# --gpu, --mem, --num-threads, --time, and any other --NAME that the config has
# an option line for (--NAME-X maps to NAME_X), are looked up this way.
# The config is --config FILE, else conf/slurm.conf (conf/queue.conf) in the
# working directory, else the one in the recipe beside this script.
use strict;
use warnings;
use Cwd qw(getcwd);
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use File::Spec;
use Time::HiRes qw(sleep time);
use FindBin qw($RealBin);
use lib $RealBin;
use JobCommon qw(command_of now option_value parse_job_args substitute report_failed);

my $me = basename($0);
my %schedulers = (
    'slurm.pl' => {
        name     => 'slurm',
        conf     => 'slurm.conf',
        task_var => 'SLURM_ARRAY_TASK_ID',
        job_var  => 'SLURM_JOB_ID',
        cancel   => 'scancel',
    },
    'queue.pl' => {
        name     => 'sge',
        conf     => 'queue.conf',
        task_var => 'SGE_TASK_ID',
        job_var  => 'JOB_ID',
        cancel   => 'qdel',
    },
);
my $sched = $schedulers{$me}
    or die "$me: ERROR: call this program as slurm.pl (Slurm) or queue.pl (Grid Engine)\n";

my $MARKER_POLL = 1;       # seconds between looks for the done files
my $SCHED_POLL = 10;       # seconds between scheduler queries, at least
my $GONE_GRACE = 5;        # seconds a task may lack its done file once the scheduler lists it as ended
# Slurm job states after which a task runs no more.
my %slurm_ended = map { $_ => 1 }
    qw(BOOT_FAIL CANCELLED COMPLETED DEADLINE FAILED NODE_FAIL OUT_OF_MEMORY PREEMPTED REVOKED SPECIAL_EXIT TIMEOUT);

sub usage {
    return <<"END";
Usage: utils/$me [options] [VAR=START:END] LOGFILE COMMAND...
 e.g.: utils/$me --mem 4G JOB=1:4 exp/x/log/decode.JOB.log local/decode.py --part JOB
Runs COMMAND through $sched->{name} (once, or as an array job over the range),
waits for it and exits 1 naming the failed logs, like utils/run.pl.
Options:
  --gpu N            GPUs per job (mapped by the config; default there)
  --mem X            memory per thread, e.g. 4G (mapped by the config)
  --num-threads N    threads per job (mapped by the config; default: 1)
  --time T           time limit (mapped by the config)
  --NAME VALUE       any other option the config has an "option NAME=" line for
  --max-jobs-run N   run at most N jobs of the array at once (default: no limit)
  --config FILE      option-to-flag mapping (default: conf/$sched->{conf})
  -h, --help         show this message
Every occurrence of VAR in LOGFILE and COMMAND is replaced by the job index.
Job scripts, scheduler output and done files go to DIR/q/ beside the logs.
END
}

sub usage_error {
    my ($msg) = @_;
    print STDERR "$me: ERROR: $msg\n", usage();
    exit 1;
}

sub fail {
    my ($msg) = @_;
    print STDERR "$me: ERROR: $msg\n";
    exit 1;
}

# A bash single-quoted literal of any string.
sub shell_literal {
    my ($s) = @_;
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

# Runs a command (a list, no shell); returns its exit code and its stdout and
# stderr together.
sub capture {
    my @cmd = @_;
    my $pid = open(my $fh, '-|');
    return (127, "cannot fork: $!") unless defined $pid;
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT) or die "cannot redirect stderr: $!\n";
        exec(@cmd) or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }
    local $/;
    my $out = <$fh> // '';
    close($fh);
    my $rc = ($? & 127) ? 128 + ($? & 127) : $? >> 8;
    return ($rc, $out);
}

# ---------------------------------------------------------------- options
my %given;        # option name (with _) => value, from the command line
my $max_jobs_run;
my $config;
my $num_threads = 1;
while (@ARGV && $ARGV[0] =~ /^-/) {
    my $opt = shift @ARGV;
    if ($opt eq '-h' || $opt eq '--help') {
        print usage();
        exit 0;
    }
    usage_error("bad option $opt (options look like --name VALUE)") unless $opt =~ /^--[A-Za-z]/;
    ($opt, my $value) = option_value($opt, \@ARGV, \&usage_error);
    if ($opt eq '--max-jobs-run') {
        usage_error("--max-jobs-run needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs_run = $value;
    } elsif ($opt eq '--config') {
        $config = $value;
    } else {
        (my $name = substr($opt, 2)) =~ tr/-/_/;
        usage_error("option $opt: bad name") unless $name =~ /^[A-Za-z]\w*$/;
        usage_error("option $opt: value '$value' holds whitespace") if $value =~ /\s/ || $value eq '';
        if ($name eq 'num_threads') {
            usage_error("--num-threads needs a positive integer, got '$value'") unless $value =~ /^[1-9]\d*$/;
            $num_threads = $value;
        }
        $given{$name} = $value;
    }
}

my $job = parse_job_args(\@ARGV, \&usage_error);
my ($var, $first, $last, $log_pattern) = @$job{qw(var first last log_pattern)};
my @words = @{ $job->{words} };

# ---------------------------------------------------------------- config
# Returns the submit command words and the flags for the given options.
sub read_config {
    my ($file) = @_;
    open(my $fh, '<', $file) or fail("cannot read the config $file: $!");
    my (@command, %exact, %wild, %default, %known);
    while (my $line = <$fh>) {
        chomp $line;
        $line =~ s/(^|\s)#.*$//;
        next if $line =~ /^\s*$/;
        my ($kind, $rest) = $line =~ /^\s*(\S+)\s*(.*?)\s*$/;
        my $where = "$file line $.";
        if ($kind eq 'command') {
            fail("$where: 'command' needs the submit command") if $rest eq '';
            @command = split(' ', $rest);
        } elsif ($kind eq 'option' || $kind eq 'default') {
            my ($name, $value, $flags) = $rest =~ /^([A-Za-z]\w*)=(\S+)\s*(.*)$/
                or fail("$where: expected '$kind NAME=VALUE" . ($kind eq 'option' ? " [FLAGS...]'" : "'") . ", got: $line");
            $known{$name} = 1;
            if ($kind eq 'default') {
                fail("$where: 'default' takes no flags: $line") if $flags ne '';
                $default{$name} = $value;
            } elsif ($value eq '*') {
                $wild{$name} = $flags;
            } else {
                $exact{"$name=$value"} = $flags;
            }
        } else {
            fail("$where: unknown line (expected command, option or default): $line");
        }
    }
    close($fh);
    fail("$file has no 'command' line (e.g. 'command sbatch --export=ALL')") unless @command;
    for my $name (sort keys %given) {
        next if $known{$name};
        (my $opt = $name) =~ tr/_/-/;
        fail("option --$opt: $file has no 'option $name=...' line; add one to map it to scheduler flags");
    }
    my @flags;
    for my $name (sort keys %known) {
        my $value = exists $given{$name} ? $given{$name} : $default{$name};
        next unless defined $value;
        my $flags = $exact{"$name=$value"};
        if (!defined $flags) {
            defined $wild{$name}
                or fail("$file has no 'option $name=$value' or 'option $name=*' line for $name=$value");
            ($flags = $wild{$name}) =~ s/\$0/$value/g;
        }
        push @flags, split(' ', $flags);
    }
    return (\@command, \@flags);
}

if (!defined $config) {
    $config = "conf/$sched->{conf}";
    $config = File::Spec->catfile(dirname($0), '..', 'conf', $sched->{conf}) unless -f $config;
}
fail("config $config not found (give one with --config FILE)") unless -f $config;
my ($command, $option_flags) = read_config($config);

# ---------------------------------------------------------------- jobs
my $cwd = getcwd();
sub absolute { my ($p) = @_; return File::Spec->file_name_is_absolute($p) ? $p : "$cwd/$p"; }

# The job's log directory holds q/ for every job of this call.
my $logdir = dirname($log_pattern);
my $qdir = absolute("$logdir/q");
(my $stem = basename($log_pattern)) =~ s/\.log$//;
(my $job_name = $stem) =~ s/[^A-Za-z0-9_.-]/_/g;
$job_name = "j$job_name" unless $job_name =~ /^[A-Za-z]/;

# The name of a task's files in q/: the log's stem with VAR replaced by the
# task id (by the scheduler's placeholder for it), or with it appended.
sub task_file {
    my ($task) = @_;
    return defined $var && index($stem, $var) >= 0 ? substitute($stem, $var, $task) : "$stem.$task";
}

# Array task ids: the job indices, shifted by one when the range starts at 0.
my $offset = (defined $var && $first == 0) ? 1 : 0;
my @tasks;    # {task, log, cmd, done, out}; later code or lost
for my $index (defined $var ? ($first .. $last) : (undef)) {
    my $task = defined $index ? $index + $offset : 1;
    push @tasks, {
        task => $task,
        log  => substitute($log_pattern, $var, $index),
        cmd  => command_of(map { substitute($_, $var, $index) } @words),
        done => "$qdir/" . task_file($task) . ".done",
        out  => "$qdir/" . task_file($task) . ".out",
    };
}

eval { make_path($qdir); 1 } or fail("cannot create $qdir: $@");
for my $t (@tasks) {
    unlink($t->{done}, $t->{out});
}

my $script = "$qdir/$stem.sh";
{
    my $case = '';
    for my $t (@tasks) {
        $case .= sprintf("  %d) log=%s; done_file=%s\n     cmd=%s ;;\n", $t->{task},
            shell_literal($t->{log}), shell_literal($t->{done}), shell_literal($t->{cmd}));
    }
    my $task_expr = defined $var ? "\${$sched->{task_var}:-}" : '1';
    my $text = <<"END";
#!/usr/bin/env bash
# Written by utils/$me at ${\ now()} for $log_pattern.
# Runs one task of the job: the log gets run.pl's header and trailer, then
# the done file gets the exit code (utils/$me waits for it).
cd ${\ shell_literal($cwd)} || exit 1
# The submitting shell's PATH (e.g. the recipe's venv first): a scheduler that
# starts jobs in a login shell (Grid Engine's login_shells) resets it.
export PATH=${\ shell_literal($ENV{PATH} // '/usr/bin:/bin')}
task=$task_expr
case "\${task}" in
$case  *) echo "$me job script: no job for array task '\${task}'" >&2; exit 1 ;;
esac
echo "\$(hostname): $sched->{name} job \${$sched->{job_var}:-?} task \${task}, log \${log}"
start=\$(date +%s)
mkdir -p "\$(dirname "\${log}")" &&
  { printf '# %s\\n# Started at %s\\n' "\${cmd//\$'\\n'/\$'\\n'# }" "\$(LC_ALL=C date)" > "\${log}"; } || {
    echo "$me job script: cannot write the log \${log}" >&2
    echo 1 > "\${done_file}"
    exit 1
  }
# Termination signals (scancel, time limit) reach the command too; with a
# handler set, this script waits for it and still writes the trailer.
trap : TERM INT HUP
bash -c "\${cmd}" >> "\${log}" 2>&1
rc=\$?
elapsed=\$(( \$(date +%s) - start ))
printf '# Accounting: time=%s threads=%s\\n# Ended (code %s) at %s, elapsed time %s seconds\\n' \\
  "\${elapsed}" $num_threads "\${rc}" "\$(LC_ALL=C date)" "\${elapsed}" >> "\${log}"
echo "\${rc}" > "\${done_file}.tmp" && mv -f "\${done_file}.tmp" "\${done_file}"
exit "\${rc}"
END
    open(my $fh, '>', "$script.tmp") or fail("cannot write $script.tmp: $!");
    print $fh $text;
    close($fh) or fail("cannot write $script.tmp: $!");
    chmod(0755, "$script.tmp");
    rename("$script.tmp", $script) or fail("cannot rename $script.tmp: $!");
}

# ---------------------------------------------------------------- submit
my @own;
my ($lo, $hi) = ($tasks[0]{task}, $tasks[-1]{task});
if ($sched->{name} eq 'slurm') {
    @own = ('--parsable', "--job-name=$job_name",
            '--output=' . (defined $var ? "$qdir/" . task_file('%a') . '.out' : $tasks[0]{out}));
    push @own, "--array=$lo-$hi" . (defined $max_jobs_run ? "%$max_jobs_run" : '') if defined $var;
} else {
    @own = ('-terse', '-S', '/bin/bash', '-j', 'y', '-N', $job_name,
            '-o', (defined $var ? "$qdir/" . task_file('$TASK_ID') . '.out' : $tasks[0]{out}));
    push @own, '-t', "$lo-$hi" if defined $var;
    push @own, '-tc', $max_jobs_run if defined $var && defined $max_jobs_run;
}
my @submit = (@$command, @$option_flags, @own, $script);
my ($rc, $out) = capture(@submit);
my ($job_id) = $out =~ /^(\d+)/m;
if ($rc != 0 || !defined $job_id) {
    fail("submitting failed (exit code $rc): " . join(' ', @submit) . "\n$out");
}

# ---------------------------------------------------------------- wait
my $stop_signal;
$SIG{$_} = sub { $stop_signal = $_[0] } for qw(INT TERM HUP);

# Asks the scheduler which tasks have ended: returns a hash task => state
# (an empty hash while all run or wait), or undef when it could not tell.
sub ended_tasks {
    my %ended;
    if ($sched->{name} eq 'slurm') {
        my ($qrc, $qout) = capture('squeue', '-h', '-r', '-t', 'all', '-j', $job_id, '-o', '%K %T');
        if ($qrc != 0) {
            return undef unless $qout =~ /Invalid job id/i;
            return { map { ($_->{task} => 'gone from the queue') } @tasks };
        }
        my %listed;
        for my $line (split /\n/, $qout) {
            my ($task, $state) = split(' ', $line);
            next unless defined $state;
            $task = $tasks[0]{task} if $task eq 'N/A';
            $listed{$task} = $state;
        }
        for my $t (@tasks) {
            my $state = $listed{$t->{task}};
            $ended{$t->{task}} = $state // 'gone from the queue' if !defined $state || $slurm_ended{$state};
        }
    } else {
        my ($qrc, $qout) = capture('qstat', '-j', $job_id);
        return {} if $qrc == 0;
        return undef unless $qout =~ /do not exist/i;
        %ended = map { ($_->{task} => 'gone from the queue') } @tasks;
    }
    return \%ended;
}

my %waiting = map { ($_->{task} => $_) } @tasks;
my %ended_since;    # task => [time the scheduler first listed it as ended, state]
my $next_query = time() + $SCHED_POLL;
my $warned_query = 0;
while (%waiting) {
    if (defined $stop_signal) {
        capture($sched->{cancel}, $job_id);
        print STDERR "$me: stopped by SIG$stop_signal; cancelled $sched->{name} job $job_id; see the logs in $logdir\n";
        exit 1;
    }
    for my $task (keys %waiting) {
        my $t = $waiting{$task};
        next unless -f $t->{done};
        open(my $fh, '<', $t->{done}) or next;
        my $code = <$fh>;
        close($fh);
        next unless defined $code && $code =~ /^(\d+)$/;
        $t->{code} = $1;
        delete $waiting{$task};
    }
    last unless %waiting;
    if (time() >= $next_query) {
        $next_query = time() + $SCHED_POLL;
        my $ended = ended_tasks();
        if (!defined $ended) {
            print STDERR "$me: WARNING: cannot ask $sched->{name} about job $job_id; still waiting for the done files\n"
                unless $warned_query++;
        } else {
            for my $task (keys %waiting) {
                if (exists $ended->{$task}) {
                    $ended_since{$task} //= [time(), $ended->{$task}];
                } else {
                    delete $ended_since{$task};
                }
            }
        }
    }
    # A task the scheduler lists as ended, still without its done file after
    # the grace time, ended without running its trailer (killed, node lost).
    for my $task (keys %ended_since) {
        next unless $waiting{$task} && time() - $ended_since{$task}[0] >= $GONE_GRACE;
        my $t = delete $waiting{$task};
        $t->{lost} = $ended_since{$task}[1];
    }
    sleep($MARKER_POLL) if %waiting;
}

# ---------------------------------------------------------------- report
my @failed;
for my $t (@tasks) {
    next if defined $t->{code} && $t->{code} == 0;
    push @failed, $t->{log};
    next unless defined $t->{lost};
    my $note = "$sched->{name} job ${job_id} task $t->{task} ended ($t->{lost}) without writing its exit code; "
        . "the scheduler's output is in $t->{out}";
    print STDERR "$me: $note\n";
    if (open(my $fh, '>>', $t->{log})) {
        print $fh "# $me: $note\n";
        close($fh);
    }
}
exit 1 if report_failed($me, $var, \@failed, scalar @tasks);
exit 0;
