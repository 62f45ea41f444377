//! The zsh completion script: a `_pgcopy` function for zsh's completion system (`#compdef`),
//! the commands with what each does, and for each command an `_arguments` call with its
//! options, their arguments (values help names, `_files` for files and directories) and its
//! positional arguments.

use super::{summary, Argument, Completes, Flag, Manual, Page};

/// The whole script.
pub(crate) fn script(manual: &Manual) -> String {
    let mut out = format!(
        "#compdef pgcopy
# zsh completion for pgcopy {}, made by `pgcopy completions zsh` from the commands and
# options its help shows. Install it as _pgcopy in a directory of $fpath, then start zsh:
#   pgcopy completions zsh > \"${{fpath[1]}}/_pgcopy\"
# or, where compinit has run: source <(pgcopy completions zsh)

_pgcopy_commands() {{
    local -a commands
    commands=(
",
        env!("CARGO_PKG_VERSION")
    );
    for (name, description) in &manual.program.commands {
        out.push_str(&format!(
            "        {}\n",
            quote(&format!("{name}:{}", summary(description)))
        ));
    }
    for flag in manual.program.flags() {
        for word in flag.words() {
            out.push_str(&format!(
                "        {}\n",
                quote(&format!("{word}:{}", summary(&flag.description)))
            ));
        }
    }
    out.push_str("    )\n    _describe -t commands 'pgcopy command' commands\n}\n");

    for command in &manual.commands {
        out.push_str(&format!(
            "\n_pgcopy_{}() {{\n",
            function_name(&command.name)
        ));
        out.push_str(&arguments(command, &[]));
        out.push_str("}\n");
    }

    out.push_str(
        "\n_pgcopy() {
    local curcontext=$curcontext state state_descr line ret=1
    typeset -A opt_args
",
    );
    out.push_str(&arguments(
        &manual.program,
        &["':command:_pgcopy_commands'", "'*:: :->command'"],
    ));
    out.push_str(
        "    if [[ $state == command ]]; then
        curcontext=${curcontext%:*:*}:pgcopy-$words[1]:
        case $words[1] in
",
    );
    for command in &manual.commands {
        out.push_str(&format!(
            "        {}) _pgcopy_{} && ret=0 ;;\n",
            command.name,
            function_name(&command.name)
        ));
    }
    for word in manual.program.flags().flat_map(Flag::words) {
        out.push_str(&format!(
            "        {word}) _arguments ':command:_pgcopy_commands' && ret=0 ;;\n"
        ));
    }
    out.push_str(
        "        esac
    fi
    return ret
}

# Autoloaded from $fpath, this file is _pgcopy's body on its first call; sourced, it
# registers _pgcopy.
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _pgcopy \"$@\"
else
    compdef _pgcopy pgcopy
fi
",
    );
    out
}

/// The `_arguments` call of a page: its options, its positional arguments, then `extra`
/// specs; the program's, which has them, sets the state and `ret` the dispatch after it
/// reads.
fn arguments(page: &Page, extra: &[&str]) -> String {
    let mut specs: Vec<String> = page.flags().filter_map(option).collect();
    for (i, positional) in page.positionals.iter().enumerate() {
        let argument = &positional.argument;
        specs.push(quote(&format!(
            "{}:{}:{}",
            i + 1,
            argument.name,
            action(argument)
        )));
    }
    specs.extend(extra.iter().map(|s| s.to_string()));
    let (call, tail) = match extra.is_empty() {
        true => ("    _arguments", ""),
        false => ("    _arguments -C", " && ret=0"),
    };
    let mut out = String::from(call);
    for spec in specs {
        out.push_str(" \\\n        ");
        out.push_str(&spec);
    }
    out.push_str(tail);
    out.push('\n');
    out
}

/// An option's spec: `'(-q --quiet)'{-q,--quiet}'[errors only]'`, `'--fk-mode[…]:MODE:(auto
/// replica drop none)'`, `'*--include-tables[…]:LIST: '` for one that repeats.
fn option(flag: &Flag) -> Option<String> {
    let dashed: Vec<&str> = flag.dashed().collect();
    let first = *dashed.first()?;
    let repeats = flag.argument.as_ref().is_some_and(|a| a.repeats);
    let mut after = format!("[{}]", bracketed(&summary(&flag.description)));
    if let Some(argument) = &flag.argument {
        after.push_str(&format!(":{}:{}", argument.name, action(argument)));
    }
    let star = if repeats { "*" } else { "" };
    Some(if dashed.len() == 1 {
        quote(&format!("{star}{first}{after}"))
    } else {
        let exclusive = match repeats {
            true => "*".to_string(),
            false => format!("({})", dashed.join(" ")),
        };
        format!(
            "{}{{{}}}{}",
            quote(&exclusive),
            dashed.join(","),
            quote(&after)
        )
    })
}

/// What zsh completes an argument with.
fn action(argument: &Argument) -> String {
    match &argument.completes {
        // A single space: show the argument's name, offer nothing.
        Completes::Text => " ".to_string(),
        Completes::Files => "_files".to_string(),
        Completes::Directories => "_files -/".to_string(),
        Completes::Words(words) => format!("({})", words.join(" ")),
    }
}

/// A description inside an option spec's brackets.
fn bracketed(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('[', r"\[")
        .replace(']', r"\]")
}

/// A command name as part of a function's name.
fn function_name(name: &str) -> String {
    name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

/// A word for zsh, in single quotes.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_option_as_an_arguments_spec() {
        let script = script(&Manual::read());
        assert!(script.starts_with("#compdef pgcopy\n"));
        assert!(script.contains("        'copy:Replace the data of the selected destination tables with the source'\\''s'\n"));
        assert!(script.contains("        'help:display usage information'\n"));
        let copy = script.split("\n_pgcopy_copy() {\n").nth(1).unwrap();
        let copy = &copy[..copy.find("\n}\n").unwrap()];
        for spec in [
            "'--source[source connection]:CONN: '",
            "'--source-file[read the source connection from the first non-comment line of this file]:PATH:_files'",
            "'*--include-tables[comma-separated glob patterns of tables to copy, matched against `table` and `schema.table`]:LIST: '",
            "'--fk-mode[how foreign keys and triggers are kept out of the load'\\''s way]:MODE:(auto replica drop none)'",
            "'--state-dir[directory for the state files that let an interrupted run be put back]:DIR:_files -/'",
            "'(-q --quiet)'{-q,--quiet}'[errors only]'",
            "'(-h --help)'{-h,--help}'[display usage information]'",
        ] {
            assert!(copy.contains(spec), "{spec}\n{copy}");
        }
        assert!(script.contains("        copy) _pgcopy_copy && ret=0 ;;\n"));
        assert!(
            script.contains("        help) _arguments ':command:_pgcopy_commands' && ret=0 ;;\n")
        );
        assert!(script.contains("'1:SHELL:(bash zsh fish)'"));
    }

    #[test]
    fn escapes_brackets_in_descriptions() {
        assert_eq!(bracketed("a [b] \\"), r"a \[b\] \\");
    }
}
