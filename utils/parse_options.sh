# shellcheck shell=bash
# Kaldi-style command-line options for recipe scripts.  SOURCE it, do not run it:
#
#   stage=1          # every option is a shell variable with a default ...
#   use_lora=false
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh || exit 1   # ... and may then be overridden
#
# Rules:
#   --foo-bar VALUE | --foo-bar=VALUE   sets the existing variable foo_bar
#                                       (dashes become underscores); an
#                                       option with no such variable is an error.
#   a variable whose current value is true/false accepts only true or false.
#   --config FILE                       sources FILE (lines of name=value) before
#                                       any other option is applied, so the
#                                       command line overrides the config; may
#                                       be given several times (left to right).
#   --help | -h                         prints $help_message and exits 0.
#   --                                  ends the options.
# Parsing stops at the first argument that does not start with "--"; it and
# everything after it are left in "$@" for the caller.  Safe under
# "set -euo pipefail".  On an error it prints "ERROR: ..." to stderr and
# returns 1.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "ERROR: utils/parse_options.sh must be sourced (. utils/parse_options.sh), not run" >&2
  exit 1
fi

# __parse_options_scan ARGS...
# Applies the options at the front of ARGS and sets __parse_options_nshift to
# how many words they took.  Returns 1 on a bad option.  Help exits the shell.
__parse_options_scan() {
  local __po_arg __po_opt __po_name __po_value __po_has_value __po_i __po_config
  local -a __po_args=("$@")
  local __po_n=${#__po_args[@]}

  # Config files first, so that options given on the command line win.
  for ((__po_i = 0; __po_i < __po_n; __po_i++)); do
    __po_arg=${__po_args[__po_i]}
    case "$__po_arg" in
      --) break ;;
      --config=*) __po_config=${__po_arg#--config=} ;;
      --config)
        if ((__po_i + 1 >= __po_n)); then
          echo "ERROR: option --config needs a file name" >&2
          return 1
        fi
        __po_i=$((__po_i + 1))
        __po_config=${__po_args[__po_i]}
        ;;
      --help | -h) continue ;;
      --*=*) continue ;;
      --*) __po_i=$((__po_i + 1)); continue ;;  # skip the option's value
      *) break ;;
    esac
    if [[ ! -f "$__po_config" || ! -r "$__po_config" ]]; then
      echo "ERROR: config file '$__po_config' (from --config) does not exist or is not readable" >&2
      return 1
    fi
    # shellcheck disable=SC1090
    . "$__po_config" || {
      echo "ERROR: failed to source config file '$__po_config'" >&2
      return 1
    }
  done

  __parse_options_nshift=0
  for ((__po_i = 0; __po_i < __po_n; __po_i++)); do
    __po_arg=${__po_args[__po_i]}
    case "$__po_arg" in
      --)
        __parse_options_nshift=$((__po_i + 1))
        return 0
        ;;
      --help | -h)
        if [[ -n "${help_message+x}" ]]; then
          printf '%s\n' "$help_message"
        else
          echo "No help message for $0: its options are the variables set before it sources utils/parse_options.sh."
        fi
        exit 0
        ;;
      --*=*)
        __po_opt=${__po_arg%%=*}
        __po_value=${__po_arg#*=}
        __po_has_value=true
        ;;
      --*)
        __po_opt=$__po_arg
        if ((__po_i + 1 < __po_n)); then
          __po_i=$((__po_i + 1))
          __po_value=${__po_args[__po_i]}
          __po_has_value=true
        else
          __po_has_value=false
        fi
        ;;
      *)
        break
        ;;
    esac
    __po_name=${__po_opt#--}
    __po_name=${__po_name//-/_}
    if [[ "$__po_name" == config ]]; then
      :  # already sourced above
    elif [[ ! "$__po_name" =~ ^[A-Za-z][A-Za-z0-9_]*$ || -z "${!__po_name+x}" ]]; then
      echo "ERROR: invalid option $__po_opt (no variable '$__po_name' in $0); see $0 --help" >&2
      return 1
    elif [[ "$__po_has_value" != true ]]; then
      echo "ERROR: option $__po_opt needs a value; see $0 --help" >&2
      return 1
    elif [[ ("${!__po_name}" == true || "${!__po_name}" == false) &&
            "$__po_value" != true && "$__po_value" != false ]]; then
      echo "ERROR: option $__po_opt is boolean: expected 'true' or 'false', got '$__po_value'" >&2
      return 1
    else
      printf -v "$__po_name" '%s' "$__po_value" || {
        echo "ERROR: cannot set $__po_name from option $__po_opt (read-only?)" >&2
        return 1
      }
    fi
    __parse_options_nshift=$((__po_i + 1))
  done
  return 0
}

if __parse_options_scan "$@"; then
  shift "$__parse_options_nshift"
  unset -f __parse_options_scan
  unset __parse_options_nshift
else
  unset -f __parse_options_scan
  unset __parse_options_nshift
  return 1
fi
