//! The fish completion script: `complete` lines for the commands, and for each command its
//! options (with the values help names, file or directory names for arguments named so) and
//! its positional values, each under a condition naming the command on the line.

use super::{summary, Completes, Flag, Manual, Page};

/// The whole script.
pub(crate) fn script(manual: &Manual) -> String {
    let mut out = format!(
        "# fish completion for pgcopy {}, made by `pgcopy completions fish` from the commands
# and options its help shows. Install it:
#   pgcopy completions fish > ~/.config/fish/completions/pgcopy.fish

# The command on the line: the first word after pgcopy that is not an option.
function __pgcopy_command
    for word in (commandline -opc)[2..-1]
        if not string match -q -- '-*' $word
            echo $word
            return 0
        end
    end
    return 1
end

# Whether the command on the line is $argv[1] ('' before one is given).
function __pgcopy_in
    set -l command (__pgcopy_command)
    test \"$command\" = \"$argv[1]\"
end

# No file names, unless an option's argument is one.
complete -c pgcopy -f

",
        env!("CARGO_PKG_VERSION")
    );
    let top = "-n \"__pgcopy_in ''\"";
    for (name, description) in &manual.program.commands {
        out.push_str(&format!(
            "complete -c pgcopy {top} -a {name} -d {}\n",
            quote(&summary(description))
        ));
    }
    out.push_str(&options(&manual.program, top));
    // `pgcopy help COMMAND`, from the words of the program's help option.
    for word in manual.program.flags().flat_map(Flag::words) {
        let condition = format!("-n {}", quote(&format!("__pgcopy_in {word}")));
        for (name, description) in &manual.program.commands {
            out.push_str(&format!(
                "complete -c pgcopy {condition} -a {name} -d {}\n",
                quote(&summary(description))
            ));
        }
    }
    for command in &manual.commands {
        let condition = format!("-n {}", quote(&format!("__pgcopy_in {}", command.name)));
        out.push_str(&format!("\n# pgcopy {}\n", command.name));
        for positional in &command.positionals {
            if let Completes::Words(words) = &positional.argument.completes {
                out.push_str(&format!(
                    "complete -c pgcopy {condition} -a {} -d {}\n",
                    quote(&words.join(" ")),
                    quote(&summary(&positional.description))
                ));
            }
        }
        out.push_str(&options(command, &condition));
    }
    out
}

/// The `complete` lines of a page's options under `condition`.
fn options(page: &Page, condition: &str) -> String {
    let mut out = String::new();
    for flag in page.flags() {
        let description = quote(&summary(&flag.description));
        let mut line = format!("complete -c pgcopy {condition}");
        if let Some(short) = flag.short() {
            line.push_str(&format!(" -s {short}"));
        }
        if let Some(long) = flag.long() {
            line.push_str(&format!(" -l {}", &long[2..]));
        }
        if let Some(argument) = &flag.argument {
            line.push_str(
                match &argument.completes {
                    Completes::Text => " -x".to_string(),
                    Completes::Files => " -r -F".to_string(),
                    Completes::Directories => {
                        " -x -a '(__fish_complete_directories (commandline -ct))'".to_string()
                    }
                    Completes::Words(words) => format!(" -x -a {}", quote(&words.join(" "))),
                }
                .as_str(),
            );
        }
        if flag.dashed().next().is_some() {
            out.push_str(&format!("{line} -d {description}\n"));
        }
        for word in flag.words() {
            out.push_str(&format!(
                "complete -c pgcopy {condition} -a {word} -d {description}\n"
            ));
        }
    }
    out
}

/// A word for fish, in single quotes.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_each_command_its_options_and_their_values() {
        let script = script(&Manual::read());
        for line in [
            "complete -c pgcopy -n \"__pgcopy_in ''\" -a copy -d 'Replace the data of the selected destination tables with the source\\'s'\n",
            "complete -c pgcopy -n \"__pgcopy_in ''\" -s V -l version -d 'print the version and exit'\n",
            "complete -c pgcopy -n \"__pgcopy_in ''\" -a help -d 'display usage information'\n",
            "complete -c pgcopy -n '__pgcopy_in help' -a verify -d ",
            "complete -c pgcopy -n '__pgcopy_in copy' -l source -x -d 'source connection'\n",
            "complete -c pgcopy -n '__pgcopy_in copy' -l rules -r -F -d ",
            "complete -c pgcopy -n '__pgcopy_in copy' -l state-dir -x -a '(__fish_complete_directories (commandline -ct))' -d ",
            "complete -c pgcopy -n '__pgcopy_in copy' -l fk-mode -x -a 'auto replica drop none' -d ",
            "complete -c pgcopy -n '__pgcopy_in copy' -s q -l quiet -d 'errors only'\n",
            "complete -c pgcopy -n '__pgcopy_in completions' -a 'bash zsh fish' -d 'the shell to complete pgcopy\\'s commands in'\n",
        ] {
            assert!(script.contains(line), "{line}");
        }
    }

    #[test]
    fn quotes_for_fish() {
        assert_eq!(quote(r"it's a \ "), r"'it\'s a \\ '");
    }
}
