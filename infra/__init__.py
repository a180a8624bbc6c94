"""The AWS stack (CDK): a thin stack composing one construct per concern."""
