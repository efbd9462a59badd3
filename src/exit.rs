//! The process exit codes, one meaning each, shared by the plan and every command.

/// How a command ended, in rising order of severity, so that the outcome of several steps is
/// their [`max`](Ord::max): an error outweighs pending work, which outweighs done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// Done: no problem, nothing to submit, nothing pending. Exit code 0.
    Ok,
    /// Changes planned or jobs still pending: a later run has work to do. Exit code 2.
    Pending,
    /// An error (every problem is listed), or a job that failed. Exit code 1.
    Error,
}

impl Exit {
    /// The process exit code: 0, 2 or 1.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
            Self::Pending => 2,
        }
    }
}

impl serde::Serialize for Exit {
    /// As the number a pipeline sees.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn the_most_severe_outcome_wins_and_keeps_its_code() {
        assert_eq!(Exit::Ok.max(Exit::Pending), Exit::Pending);
        assert_eq!(Exit::Pending.max(Exit::Error), Exit::Error);
        assert_eq!(
            [Exit::Ok, Exit::Error, Exit::Pending].into_iter().max(),
            Some(Exit::Error)
        );
        assert_eq!(
            [Exit::Ok, Exit::Pending, Exit::Error].map(Exit::code),
            [0, 2, 1]
        );
    }
}
