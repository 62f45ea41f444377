//! The bash completion script: one function that finds the command on the line and offers
//! its options, the values an option's help names, file or directory names for arguments
//! named so, and a command's positional values. It needs bash 4 and nothing else (not the
//! bash-completion package).

use super::{Completes, Manual, Page};

/// The whole script.
pub(crate) fn script(manual: &Manual) -> String {
    let commands: Vec<&str> = manual.commands.iter().map(|c| c.name.as_str()).collect();
    let mut out = format!(
        "# bash completion for pgcopy {}, made by `pgcopy completions bash` from the commands
# and options its help shows. Load it with: source <(pgcopy completions bash)

# _pgcopy_reply WORDS: those of WORDS that begin with the word being completed.
_pgcopy_reply() {{
    mapfile -t COMPREPLY < <(compgen -W \"$1\" -- \"$cur\")
}}

# _pgcopy_files [-d]: file names, or with -d directory names.
_pgcopy_files() {{
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen \"${{1:--f}}\" -- \"$cur\")
}}

_pgcopy() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev= command= at=0 i
    ((COMP_CWORD > 0)) && prev=${{COMP_WORDS[COMP_CWORD - 1]}}
    # The command is the first word after pgcopy that is not an option.
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${{COMP_WORDS[i]}} != -* ]]; then
            command=${{COMP_WORDS[i]}}
            at=$i
            break
        fi
    done
    case $command in
    '')
        _pgcopy_reply {}
        ;;
",
        env!("CARGO_PKG_VERSION"),
        quote(&[commands.join(" "), names(&manual.program)].join(" "))
    );
    // `pgcopy help COMMAND`, from the words of the program's help option.
    for word in manual.program.flags().flat_map(|f| f.words()) {
        out.push_str(&format!(
            "    {word})
        ((COMP_CWORD == at + 1)) && _pgcopy_reply {}
        ;;
",
            quote(&commands.join(" "))
        ));
    }
    for command in &manual.commands {
        out.push_str(&command_arm(command));
    }
    out.push_str(
        "    esac
}

complete -F _pgcopy pgcopy
",
    );
    out
}

/// The `case` arm of one command.
fn command_arm(page: &Page) -> String {
    let mut out = format!("    {})\n        case $prev in\n", page.name);
    // What follows each option that takes an argument, and the options it follows; an
    // argument of the user's own (an empty action) offers nothing.
    let mut arms: Vec<(String, Vec<&str>)> = Vec::new();
    for flag in page.flags() {
        let Some(argument) = &flag.argument else {
            continue;
        };
        let action = match &argument.completes {
            Completes::Text => String::new(),
            Completes::Files => " _pgcopy_files".to_string(),
            Completes::Directories => " _pgcopy_files -d".to_string(),
            Completes::Words(words) => format!(" _pgcopy_reply {}", quote(&words.join(" "))),
        };
        match arms.iter_mut().find(|(a, _)| *a == action) {
            Some((_, names)) => names.extend(flag.dashed()),
            None => arms.push((action, flag.dashed().collect())),
        }
    }
    for (action, names) in arms {
        out.push_str(&format!("        {}){action} ;;\n", names.join(" | ")));
    }
    let options = quote(&names(page));
    let positional_values: Vec<(usize, &Vec<String>)> = page
        .positionals
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.argument.completes {
            Completes::Words(words) => Some((i, words)),
            _ => None,
        })
        .collect();
    if positional_values.is_empty() {
        out.push_str(&format!("        *) _pgcopy_reply {options} ;;\n"));
    } else {
        // Which positional argument this is: the words after the command that are neither
        // options nor their arguments.
        let takes: Vec<&str> = page
            .flags()
            .filter(|f| f.argument.is_some())
            .flat_map(|f| f.dashed())
            .collect();
        out.push_str("        *)\n            local given=0 words=");
        out.push_str(&options);
        out.push_str("\n            for ((i = at + 1; i < COMP_CWORD; i++)); do\n");
        out.push_str("                case ${COMP_WORDS[i]} in\n                -*) ;;\n");
        if !takes.is_empty() {
            out.push_str(&format!(
                "                *) case ${{COMP_WORDS[i - 1]}} in {}) ;; *) ((given += 1)) ;; esac ;;\n",
                takes.join(" | ")
            ));
        } else {
            out.push_str("                *) ((given += 1)) ;;\n");
        }
        out.push_str("                esac\n            done\n            case $given in\n");
        for (i, words) in positional_values {
            out.push_str(&format!(
                "            {i}) words=\"{} $words\" ;;\n",
                words.join(" ")
            ));
        }
        out.push_str("            esac\n            _pgcopy_reply \"$words\"\n            ;;\n");
    }
    out.push_str("        esac\n        ;;\n");
    out
}

/// Every name of every option of a page, `help` and the like included.
fn names(page: &Page) -> String {
    page.flags()
        .flat_map(|f| &f.names)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word for bash, in single quotes.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_each_command_its_options_and_their_values() {
        let script = script(&Manual::read());
        assert!(script.contains("    '')\n        _pgcopy_reply 'copy list "));
        assert!(script.contains(" -V --version -h --help help'\n"));
        assert!(
            script.contains("    help)\n        ((COMP_CWORD == at + 1)) && _pgcopy_reply 'copy ")
        );
        let copy = script.split("    copy)\n").nth(1).unwrap();
        let copy = &copy[..copy.find("\n        ;;\n").unwrap()];
        assert!(copy.contains("        --fk-mode) _pgcopy_reply 'auto replica drop none' ;;\n"));
        assert!(copy.contains("        --indexes) _pgcopy_reply 'keep rebuild auto' ;;\n"));
        assert!(copy.contains("        --state-dir) _pgcopy_files -d ;;\n"));
        assert!(copy.contains(
            "        --source-file | --dest-file | --rules | --metrics-file) _pgcopy_files ;;\n"
        ));
        assert!(copy.contains("        --log-format) _pgcopy_reply 'text json' ;;\n"));
        assert!(copy.contains("        --source | --dest | --include-tables | --exclude-tables"));
        assert!(copy.contains("*) _pgcopy_reply '--source --source-file --dest --dest-file "));
        let completions = script.split("    completions)\n").nth(1).unwrap();
        assert!(completions.contains("            0) words=\"bash zsh fish $words\" ;;\n"));
    }

    #[test]
    fn quotes_for_bash() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
