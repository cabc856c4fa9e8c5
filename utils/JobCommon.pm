# What the job backends (utils/run.pl, utils/slurm.pl and utils/queue.pl)
# share: Kaldi's run.pl command line, how the command words become the job's
# shell code, the log's date format and the final report.  Each backend loads
# it from its own directory (use lib with FindBin's RealBin), so utils/ stays
# a directory a recipe can link or copy whole.
package JobCommon;
use strict;
use warnings;
use Exporter qw(import);
use POSIX qw(strftime);

our @EXPORT_OK = qw(quote_word command_of now option_value parse_job_args substitute report_failed);

# How the command words become the job's shell code (Kaldi's rule): exactly
# one word after the log is shell code as it stands (pipes, redirections,
# variables: run.pl log "a | b > c"); several words are a command and its
# arguments, each passed exactly as given: quoted for bash where needed, so
# that no path or name (; & | $ ` ' " ( ) * ...) is ever run as shell code.
sub quote_word {
    my ($w, $first) = @_;
    return $w if $w =~ m{^[A-Za-z0-9_./:\@%+,^-]+$} || (!$first && $w =~ m{^[A-Za-z0-9_./:\@%+,^=-]+$});
    $w =~ s/'/'\\''/g;
    return "'$w'";
}

sub command_of {
    my @w = @_;
    return $w[0] if @w == 1;
    return join(' ', map { quote_word($w[$_], $_ == 0) } 0 .. $#w);
}

# Same format as date(1) in the C locale.
sub now { return strftime('%a %b %e %H:%M:%S %Z %Y', localtime()); }

# The value of option $opt ("--name=value", or "--name" and the next word of
# @$args, which is then taken off): returns (name, value); calls
# $usage_error->(message) when the value is missing.
sub option_value {
    my ($opt, $args, $usage_error) = @_;
    return ($1, $2) if $opt =~ /^(--[^=]+)=(.*)$/s;
    $usage_error->("option $opt needs a value") unless @$args;
    return ($opt, shift @$args);
}

# The rest of the command line after the options: [VAR=START:END] LOGFILE
# COMMAND...  Returns a hash {var, first, last, log_pattern, words}; var is
# undef without a range (VAR=N alone is the range N:N).  Refuses an empty
# range and a range of several jobs whose log name lacks VAR (all the jobs
# would write one log).
sub parse_job_args {
    my ($args, $usage_error) = @_;
    my ($var, $first, $last);
    if (@$args && $args->[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
        ($var, $first, $last) = ($1, $2, defined $3 ? $3 : $2);
        shift @$args;
        $usage_error->("empty job range $var=$first:$last (start is after end)") if $first > $last;
    }
    $usage_error->('expected LOGFILE and COMMAND') if @$args < 2;
    my ($log_pattern, @words) = @$args;
    if (defined $var && $last > $first && index($log_pattern, $var) < 0) {
        $usage_error->(($last - $first + 1) . " jobs would all write the log $log_pattern: put $var in its name");
    }
    return { var => $var, first => $first, last => $last, log_pattern => $log_pattern, words => \@words };
}

# $text with every occurrence of the range variable replaced by $index
# (unchanged without a range).
sub substitute {
    my ($text, $var, $index) = @_;
    $text =~ s/\Q$var\E/$index/g if defined $var && defined $index;
    return $text;
}

# The final report: returns 0 when no job failed; otherwise names the failed
# logs on stderr (Kaldi's wording) and returns 1.
sub report_failed {
    my ($me, $var, $failed, $total) = @_;
    return 0 unless @$failed;
    if (defined $var) {
        printf STDERR "%s: %d / %d failed, log is in %s\n", $me, scalar @$failed, $total, join(' ', @$failed);
    } else {
        print STDERR "$me: job failed, log is in $failed->[0]\n";
    }
    return 1;
}

1;
