# bash completion for sgl — installed by `make install` into
# PREFIX/share/bash-completion/completions/sgl. Commands and flags are read
# from sgl's own help (`sgl help`, `sgl COMMAND --help`), so this file never
# lists them and cannot fall behind.

_sgl_commands() {
    sgl help 2>/dev/null | awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'
}

_sgl_flags() {
    sgl "$1" --help 2>/dev/null | grep -oE '(^|[ ,([|])--[a-z][a-z0-9-]*' | sed 's/^[ ,([|]*//' | sort -u
}

_sgl() {
    local cur prev cmd
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$(_sgl_commands) help" -- "$cur"))
        compopt -o default 2>/dev/null   # `sgl FILE` runs a script
        return
    fi
    cmd=${COMP_WORDS[1]}
    case $prev in
        --model)
            # GGUF files and directories (Hugging Face layouts)
            COMPREPLY=($(compgen -f -X '!*.gguf' -- "$cur") $(compgen -d -- "$cur"))
            compopt -o filenames 2>/dev/null
            return ;;
        --args|--batch|--file|--jsonl|--json-schema|--grammar|--ebnf|-o|--out|--programs|--load)
            compopt -o default 2>/dev/null
            COMPREPLY=()
            return ;;
        --chat-template)
            COMPREPLY=($(compgen -W "chatml llama3 llama2 mistral qwen" -- "$cur"))
            return ;;
        --device)
            COMPREPLY=($(compgen -W "cpu cuda" -- "$cur"))
            return ;;
        --tp-comm)
            COMPREPLY=($(compgen -W "nccl host auto" -- "$cur"))
            return ;;
        --segment)
            COMPREPLY=($(compgen -W "canonical random" -- "$cur"))
            return ;;
    esac
    case $cmd in
        help)
            COMPREPLY=($(compgen -W "$(_sgl_commands)" -- "$cur"))
            return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_sgl_flags "$cmd")" -- "$cur"))
        return
    fi
    case $cmd in
        run|compile)
            COMPREPLY=($(compgen -f -X '!*.sgl?(c)' -- "$cur") $(compgen -d -- "$cur"))
            compopt -o filenames 2>/dev/null ;;
        *)
            compopt -o default 2>/dev/null
            COMPREPLY=() ;;
    esac
}

shopt -s extglob 2>/dev/null
complete -F _sgl sgl
