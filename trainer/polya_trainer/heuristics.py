"""Pólya's heuristics (*How to Solve It*, "Short Dictionary of Heuristic") as prompt material.

``CATALOG`` is ordered: the first 16 entries are the ones most broadly useful for arithmetic
word problems (GSM8K), so ``heuristics.count: n`` takes a nested prefix of one fixed list.
Descriptions and worked exemplars are written for this project. Each exemplar's solution
visibly follows its heuristic and ends with the answer in ``\\boxed{}``.

Prompts are chat *messages* only (``build_messages``, ``plain_messages``); the chat template is
applied by whoever owns the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .spec import HeuristicsSpec

__all__ = [
    "ANSWER_REQUEST", "CATALOG", "STAR", "Exemplar", "Heuristic", "build_messages", "get",
    "ids", "plain_messages", "select",
]

ANSWER_REQUEST = "Put the final answer in \\boxed{}."
"""Appended to every question in prompts."""

NONE_ID = "none"
"""Reserved id for "no heuristic" (the STaR arm and plain prompts)."""


@dataclass(frozen=True, slots=True)
class Exemplar:
    """A worked example: a question, a solution following the heuristic, the final answer."""

    question: str
    solution: str
    answer: str


@dataclass(frozen=True, slots=True)
class Heuristic:
    """One heuristic: id (stored with each sample), display name, how to apply it, exemplars."""

    id: str
    name: str
    description: str
    exemplars: tuple[Exemplar, ...] = field(default_factory=tuple)

    def instruction(self) -> str:
        """The instruction text that heads a prompt for this heuristic."""
        if self.id == NONE_ID:
            return "Solve the problem step by step. " + ANSWER_REQUEST
        return (
            f"Solve the problem using Pólya's heuristic \"{self.name}\". {self.description} "
            "Make the use of the heuristic visible in your solution, reason step by step, "
            "and end with the final answer in \\boxed{}."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dataset cards)."""
        return {
            "id": self.id, "name": self.name, "description": self.description,
            "exemplars": [
                {"question": e.question, "solution": e.solution, "answer": e.answer}
                for e in self.exemplars
            ],
        }


def _h(id: str, name: str, description: str, *exemplars: tuple[str, str, str]) -> Heuristic:
    return Heuristic(id, name, description, tuple(Exemplar(*e) for e in exemplars))


# The catalog. Order matters: `count: n` takes the first n.
CATALOG: tuple[Heuristic, ...] = (
    _h(
        "decomposing_recombining", "Decomposing and recombining",
        "Split the problem into smaller parts that can be solved separately (different items, "
        "groups or time periods). Solve each part, label its result, then put the partial "
        "results together to answer the whole question.",
        ("A bakery sells muffins for $3 each and cookies for $2 each. On Monday it sold 40 "
         "muffins and 65 cookies. How much money did it take in on Monday?",
         "Decompose the sales into two parts.\n"
         "Part 1, muffins: 40 x $3 = $120.\n"
         "Part 2, cookies: 65 x $2 = $130.\n"
         "Recombine the parts: $120 + $130 = $250.\n"
         "The bakery took in \\boxed{250} dollars.",
         "250"),
        ("Maya reads 20 pages a day on weekdays and 35 pages a day on weekends. How many pages "
         "does she read in 2 weeks?",
         "Decompose the 2 weeks into weekdays and weekend days.\n"
         "Weekdays: 2 x 5 = 10 days, 10 x 20 = 200 pages.\n"
         "Weekend days: 2 x 2 = 4 days, 4 x 35 = 140 pages.\n"
         "Recombine: 200 + 140 = 340 pages.\n"
         "She reads \\boxed{340} pages.",
         "340"),
    ),
    _h(
        "working_backwards", "Working backwards",
        "Start from the final state or the result the problem gives and undo each operation in "
        "reverse order (an addition becomes a subtraction, a doubling becomes a halving) until "
        "you reach the unknown starting value.",
        ("Tom had some marbles. He gave 12 to his sister, then bought twice as many as he had "
         "left, and now he has 54 marbles. How many marbles did he have at first?",
         "Work backwards from the end, where Tom has 54 marbles.\n"
         "Buying twice as many as he had left means he ended with 3 times what he had left, "
         "so before buying he had 54 / 3 = 18.\n"
         "Before giving 12 to his sister he had 18 + 12 = 30.\n"
         "Tom started with \\boxed{30} marbles.",
         "30"),
        ("After spending half of her money on a jacket and then $15 on lunch, Ana has $25 "
         "left. How much money did she start with?",
         "Work backwards from the $25 she has left.\n"
         "Undo the lunch: 25 + 15 = $40 before lunch.\n"
         "Undo spending half: 40 x 2 = $80 before the jacket.\n"
         "Ana started with \\boxed{80} dollars.",
         "80"),
    ),
    _h(
        "setting_up_equations", "Setting up equations",
        "Name each unknown with a letter, translate every condition of the problem into an "
        "equation, solve the equations, and read the solution back in the words of the "
        "problem.",
        ("The sum of two numbers is 48 and one of them is 6 more than the other. What is the "
         "larger number?",
         "Let x be the smaller number; the larger is x + 6.\n"
         "Equation: x + (x + 6) = 48, so 2x + 6 = 48, 2x = 42, x = 21.\n"
         "The larger number is 21 + 6 = 27.\n"
         "The answer is \\boxed{27}.",
         "27"),
        ("An adult ticket costs $12 and a child ticket costs $7. A group bought 15 tickets for "
         "$145. How many adult tickets did they buy?",
         "Let a be the number of adult tickets and c the number of child tickets.\n"
         "Equations: a + c = 15 and 12a + 7c = 145.\n"
         "Substitute c = 15 - a: 12a + 105 - 7a = 145, so 5a = 40 and a = 8.\n"
         "They bought \\boxed{8} adult tickets.",
         "8"),
    ),
    _h(
        "logical_step_by_step", "Logical step-by-step justification",
        "Carry out the solution in small steps. State each step as a short claim, say why it "
        "follows from the data or from earlier steps, and check it before moving on.",
        ("A farmer has 3 fields. Each field has 12 rows of corn with 25 plants per row, and "
         "each plant gives 2 ears of corn. How many ears of corn does the farmer harvest?",
         "Step 1: plants in one field = rows x plants per row = 12 x 25 = 300.\n"
         "Step 2: all fields have the same layout, so plants in total = 3 x 300 = 900.\n"
         "Step 3: each plant gives 2 ears, so ears = 900 x 2 = 1800.\n"
         "The farmer harvests \\boxed{1800} ears of corn.",
         "1800"),
        ("A printer prints 18 pages per minute. How many minutes does it take to print 6 copies "
         "of a 45-page report?",
         "Step 1: pages to print = copies x pages per copy = 6 x 45 = 270.\n"
         "Step 2: time = pages / pages per minute = 270 / 18 = 15 minutes.\n"
         "Check: 15 x 18 = 270, which matches step 1.\n"
         "It takes \\boxed{15} minutes.",
         "15"),
    ),
    _h(
        "look_at_unknown", "Look at the unknown",
        "Ask first what exactly is wanted. Write down the unknown and its unit, find which "
        "quantities it can be computed from directly, and work towards those quantities.",
        ("A car travels 150 miles on 5 gallons of gas, and gas costs $4 per gallon. How much "
         "does the gas cost for a 420-mile trip?",
         "The unknown is the cost of gas for 420 miles, in dollars.\n"
         "Cost = gallons x $4, so I need the gallons for 420 miles.\n"
         "Gallons = miles / miles per gallon, and miles per gallon = 150 / 5 = 30.\n"
         "Gallons = 420 / 30 = 14, so cost = 14 x 4 = $56.\n"
         "The gas costs \\boxed{56} dollars.",
         "56"),
        ("A class of 28 students is split into teams of 4. Each team needs 3 markers, and "
         "markers come in boxes of 6. How many boxes are needed?",
         "The unknown is a number of whole boxes.\n"
         "Boxes depend on the number of markers, which depends on the number of teams.\n"
         "Teams = 28 / 4 = 7; markers = 7 x 3 = 21.\n"
         "Boxes = 21 / 6 = 3.5, and only whole boxes can be bought, so 4 boxes.\n"
         "\\boxed{4} boxes are needed.",
         "4"),
    ),
    _h(
        "use_all_data", "Did you use all the data?",
        "List every number and condition the problem gives and make sure each one is used, or "
        "deliberately set aside as irrelevant. A datum you have not used often points to a "
        "missing step.",
        ("Lena buys 4 notebooks at $2.50 each and a pen for $1.75. She pays with a $20 bill. "
         "How much change does she get?",
         "Data: 4 notebooks, $2.50 each, a pen for $1.75, a $20 bill.\n"
         "Notebooks: 4 x 2.50 = $10.00 (uses 4 and $2.50).\n"
         "Add the pen: 10.00 + 1.75 = $11.75 (uses $1.75).\n"
         "Change: 20 - 11.75 = $8.25 (uses $20). All data used.\n"
         "Her change is \\boxed{8.25} dollars.",
         "8.25"),
        ("A tank holds 500 liters and is 40% full. A pump adds 25 liters per minute. How many "
         "minutes until the tank is full?",
         "Data: capacity 500 L, 40% full, 25 L per minute.\n"
         "Water now: 40% of 500 = 200 L (uses 500 and 40%).\n"
         "Still needed: 500 - 200 = 300 L.\n"
         "Time: 300 / 25 = 12 minutes (uses 25). Every datum was used.\n"
         "The tank is full after \\boxed{12} minutes.",
         "12"),
    ),
    _h(
        "auxiliary_elements", "Introduce auxiliary elements",
        "Introduce a helpful quantity that the problem does not mention, such as a rate per "
        "unit, a total amount of work, or a price per item, so that the given data connect "
        "through it.",
        ("If 6 workers can paint a fence in 10 hours, how many hours would 4 workers take at "
         "the same rate?",
         "Auxiliary element: the total work, measured in worker-hours.\n"
         "Total work = 6 workers x 10 hours = 60 worker-hours.\n"
         "With 4 workers: 60 / 4 = 15 hours.\n"
         "They would take \\boxed{15} hours.",
         "15"),
        ("Three pounds of apples cost $4.50. How much do 7 pounds of apples cost?",
         "Auxiliary element: the price of one pound.\n"
         "Price per pound = 4.50 / 3 = $1.50.\n"
         "Seven pounds: 7 x 1.50 = $10.50.\n"
         "They cost \\boxed{10.50} dollars.",
         "10.50"),
    ),
    _h(
        "specialization", "Specialization",
        "Try special, simpler cases first: small numbers, a single item, one time period. "
        "Solve them, notice what they have in common, then scale up to the actual problem.",
        ("A staircase is built from blocks: step 1 uses 1 block, step 2 uses 2 blocks, and so "
         "on. How many blocks are needed for a staircase with 20 steps?",
         "Special cases: 1 step needs 1 block, 2 steps need 1 + 2 = 3, 3 steps need 6, "
         "4 steps need 10.\n"
         "These fit n(n + 1) / 2: for n = 4, 4 x 5 / 2 = 10.\n"
         "For 20 steps: 20 x 21 / 2 = 210 blocks.\n"
         "The staircase needs \\boxed{210} blocks.",
         "210"),
        ("Each cut of a rope takes 2 minutes. How long does it take to cut a rope into 9 "
         "pieces?",
         "Special cases: 2 pieces need 1 cut, 3 pieces need 2 cuts, 4 pieces need 3 cuts.\n"
         "So n pieces need n - 1 cuts; 9 pieces need 8 cuts.\n"
         "Time: 8 x 2 = 16 minutes.\n"
         "It takes \\boxed{16} minutes.",
         "16"),
    ),
    _h(
        "analogy", "Analogy",
        "Think of a similar problem you already know how to solve, one with the same structure "
        "but different objects or numbers. Recall its method and apply the same method here.",
        ("A tap fills a 120-liter barrel in 8 minutes. How long does it take to fill a "
         "300-liter barrel?",
         "This is like a car at constant speed, where distance = speed x time.\n"
         "Here, volume = rate x time, with rate = 120 / 8 = 15 liters per minute.\n"
         "Time = volume / rate = 300 / 15 = 20 minutes.\n"
         "It takes \\boxed{20} minutes.",
         "20"),
        ("A shop raises a $40 price by 25% and then lowers the new price by 20%. What is the "
         "final price?",
         "This is like successive interest rates: each percent change multiplies the amount.\n"
         "Raise by 25%: 40 x 1.25 = $50.\n"
         "Lower by 20%: 50 x 0.8 = $40.\n"
         "The final price is \\boxed{40} dollars.",
         "40"),
    ),
    _h(
        "restate_problem", "Restate the problem",
        "Say the problem again in your own words, stripping the story down to the mathematical "
        "relations between the quantities. A cleaner statement often shows what to compute.",
        ("Jake is 3 times as old as his daughter. In 12 years he will be twice as old as she "
         "will be. How old is Jake now?",
         "Restated: find J and d with J = 3d and J + 12 = 2(d + 12).\n"
         "Substitute: 3d + 12 = 2d + 24, so d = 12.\n"
         "Then J = 3 x 12 = 36.\n"
         "Jake is \\boxed{36} years old.",
         "36"),
        ("A store gives 1 free bottle for every 5 bottles bought. Sam wants 30 bottles in total. "
         "How many bottles must he pay for?",
         "Restated: every group of 6 bottles costs the price of 5.\n"
         "30 bottles make 30 / 6 = 5 groups.\n"
         "He pays for 5 x 5 = 25 bottles.\n"
         "Sam must pay for \\boxed{25} bottles.",
         "25"),
    ),
    _h(
        "examine_guess", "Examine your guess",
        "Make a reasonable guess, test it against every condition, and use how far off it is "
        "to improve the next guess. Repeat until a guess satisfies all the conditions.",
        ("A farm has chickens and cows: 20 animals with 56 legs in total. How many cows are "
         "there?",
         "Guess 10 cows and 10 chickens: 40 + 20 = 60 legs, 4 too many.\n"
         "Swapping one cow for a chicken removes 2 legs, so swap 2: 8 cows, 12 chickens.\n"
         "Check: 8 x 4 + 12 x 2 = 32 + 24 = 56 legs, 20 animals.\n"
         "There are \\boxed{8} cows.",
         "8"),
        ("The product of two consecutive whole numbers is 132. What is the smaller number?",
         "Guess 10: 10 x 11 = 110, too small.\n"
         "Guess 12: 12 x 13 = 156, too big.\n"
         "Guess 11: 11 x 12 = 132, correct.\n"
         "The smaller number is \\boxed{11}.",
         "11"),
    ),
    _h(
        "related_problem", "Do you know a related problem?",
        "Recall a problem you have solved before with the same or a similar unknown. Reuse its "
        "result or its method as a step towards this one.",
        ("The average of 5 test scores is 82. What score on a sixth test would raise the "
         "average to 84?",
         "Related problem: finding a total from an average, total = average x count.\n"
         "Current total: 5 x 82 = 410.\n"
         "Needed total for six tests: 6 x 84 = 504.\n"
         "Sixth score: 504 - 410 = 94.\n"
         "The sixth test needs \\boxed{94}.",
         "94"),
        ("A train leaves at 9:40 a.m. and arrives at 1:15 p.m. the same day. How many minutes "
         "does the trip take?",
         "Related problem: elapsed time, solved by counting up to whole hours.\n"
         "9:40 to 10:00 is 20 minutes; 10:00 to 1:00 is 3 hours = 180 minutes; "
         "1:00 to 1:15 is 15 minutes.\n"
         "Total: 20 + 180 + 15 = 215 minutes.\n"
         "The trip takes \\boxed{215} minutes.",
         "215"),
    ),
    _h(
        "draw_figure", "Draw a figure",
        "Make a sketch, diagram, table or number line of the situation (in text if needed), "
        "label it with the data, and read the relations off the figure.",
        ("A rectangular garden is 12 m long and 8 m wide. A path 1 m wide runs all around the "
         "outside of the garden. What is the area of the path in square meters?",
         "Figure: an outer rectangle (garden plus path) around an inner rectangle (garden).\n"
         "Outer sides: 12 + 1 + 1 = 14 m and 8 + 1 + 1 = 10 m, area 14 x 10 = 140.\n"
         "Inner area: 12 x 8 = 96.\n"
         "Path = outer - inner = 140 - 96 = 44 square meters.\n"
         "The path's area is \\boxed{44}.",
         "44"),
        ("Posts stand every 5 meters along a straight 40-meter fence, with one post at each "
         "end. How many posts are there?",
         "Number line of the posts: 0, 5, 10, 15, 20, 25, 30, 35, 40.\n"
         "The figure shows 40 / 5 = 8 gaps and one more post than gaps.\n"
         "Posts: 8 + 1 = 9.\n"
         "There are \\boxed{9} posts.",
         "9"),
    ),
    _h(
        "check_result", "Check the result",
        "After finding an answer, verify it: substitute it back into every condition, check "
        "that its size and unit are reasonable, and fix any step that fails the check.",
        ("Mia is 4 years older than twice her brother's age, and their ages add up to 31. How "
         "old is Mia?",
         "Let b be the brother's age; Mia is 2b + 4.\n"
         "b + 2b + 4 = 31, so 3b = 27 and b = 9; Mia is 2 x 9 + 4 = 22.\n"
         "Check: 22 is 4 more than twice 9, and 22 + 9 = 31. Both conditions hold.\n"
         "Mia is \\boxed{22}.",
         "22"),
        ("A shirt costs $25 after a 20% discount. What was the original price?",
         "After the discount the price is 80% of the original: 0.8p = 25, so p = 31.25.\n"
         "Check: 20% of 31.25 is 6.25, and 31.25 - 6.25 = 25. Correct, and it is above $25 "
         "as it should be.\n"
         "The original price was \\boxed{31.25} dollars.",
         "31.25"),
    ),
    _h(
        "derive_differently", "Derive the result differently",
        "Solve the problem by two different routes (for example item by item and in total, or "
        "forwards and backwards) and confirm that both routes give the same answer.",
        ("A box holds 6 rows of 8 chocolates. Kim eats 2 rows and then gives away 10 "
         "chocolates. How many chocolates remain?",
         "Route 1: total 6 x 8 = 48; eaten 2 x 8 = 16; 48 - 16 = 32; 32 - 10 = 22.\n"
         "Route 2: 6 - 2 = 4 rows remain, 4 x 8 = 32; 32 - 10 = 22.\n"
         "Both routes agree.\n"
         "\\boxed{22} chocolates remain.",
         "22"),
        ("Pens cost $1.20 each, or $10 for a pack of 10. How much is saved by buying 30 pens "
         "in packs instead of one at a time?",
         "Route 1: singly 30 x 1.20 = $36; in packs 3 x 10 = $30; saving 36 - 30 = $6.\n"
         "Route 2: a pen in a pack costs $1.00, saving $0.20 per pen; 30 x 0.20 = $6.\n"
         "Both routes agree.\n"
         "The saving is \\boxed{6} dollars.",
         "6"),
    ),
    _h(
        "auxiliary_problem", "Auxiliary problem",
        "When the problem is hard to attack directly, first solve a helper problem whose answer "
        "is a stepping stone (a rate, a total, a value for one unit), then use it to solve the "
        "original problem.",
        ("Pipe A fills a pool in 6 hours and pipe B fills it in 3 hours. How many hours do "
         "they take working together?",
         "Auxiliary problem: what part of the pool does each pipe fill in one hour?\n"
         "A fills 1/6, B fills 1/3 = 2/6, together 3/6 = 1/2 of the pool per hour.\n"
         "Back to the original: filling 1 pool at 1/2 per hour takes 2 hours.\n"
         "Together they take \\boxed{2} hours.",
         "2"),
        ("A recipe for 4 people uses 300 g of flour. How many grams of flour are needed for "
         "10 people?",
         "Auxiliary problem: how much flour for one person? 300 / 4 = 75 g.\n"
         "Original problem: 10 x 75 = 750 g.\n"
         "\\boxed{750} grams are needed.",
         "750"),
    ),
    # ---- beyond the first 16: still useful, less central to arithmetic word problems
    _h(
        "generalization", "Generalization",
        "Replace the specific numbers with general ones, solve the general problem (its "
        "structure is often easier to see), then substitute the specific values.",
        ("What is the sum of all whole numbers from 1 to 100?",
         "General problem: 1 + 2 + ... + n. Pair the first and last terms: each pair sums to "
         "n + 1 and there are n / 2 pairs, so the sum is n(n + 1) / 2.\n"
         "For n = 100: 100 x 101 / 2 = 5050.\n"
         "The sum is \\boxed{5050}.",
         "5050"),
        ("Each of 7 people shakes hands once with every other person. How many handshakes are "
         "there?",
         "General problem: n people. Each shakes n - 1 hands and every handshake is counted "
         "twice, so there are n(n - 1) / 2.\n"
         "For n = 7: 7 x 6 / 2 = 21.\n"
         "There are \\boxed{21} handshakes.",
         "21"),
    ),
    _h(
        "variation_of_problem", "Variation of the problem",
        "Change the problem a little (drop a condition, change a number, swap what is given "
        "and what is asked), solve the varied problem, and use what it teaches you to return "
        "to the original.",
        ("A number is doubled and then 7 is added, giving 43. What is the number?",
         "Variation: without the + 7, doubling a number to get 36 gives 18.\n"
         "The original differs by the + 7, so first remove it: 43 - 7 = 36.\n"
         "Then halve, as in the variation: 36 / 2 = 18.\n"
         "The number is \\boxed{18}.",
         "18"),
        ("How many multiples of 6 are there from 1 to 100?",
         "Variation: from 1 to 60 the multiples are 6, 12, ..., 60, which is 60 / 6 = 10.\n"
         "Back to 100: the largest multiple of 6 not above 100 is 96 = 6 x 16.\n"
         "So there are 16 multiples.\n"
         "The answer is \\boxed{16}.",
         "16"),
    ),
    _h(
        "bright_idea", "Bright idea",
        "Look for a simplifying insight (a clever regrouping, a hidden pattern, a point of "
        "view) that makes most of the work unnecessary. State the idea, then verify it.",
        ("Compute 25 x 36 x 4.",
         "Bright idea: regroup so that 25 meets 4, because 25 x 4 = 100.\n"
         "25 x 36 x 4 = (25 x 4) x 36 = 100 x 36 = 3600.\n"
         "The product is \\boxed{3600}.",
         "3600"),
        ("In a knockout tournament with 100 teams, every game eliminates exactly one team. How "
         "many games are played to find the champion?",
         "Bright idea: count eliminations instead of rounds.\n"
         "Every team except the champion is eliminated exactly once, and each game eliminates "
         "one team, so there are 100 - 1 = 99 games.\n"
         "\\boxed{99} games are played.",
         "99"),
    ),
    _h(
        "symmetry", "Symmetry",
        "Notice when quantities play interchangeable roles or when a situation is balanced. "
        "Treat equal parts alike and use the balance to save work.",
        ("Two friends split an $84 bill equally, and each adds a $6 tip. How much does each "
         "friend pay in total?",
         "The two friends play symmetric roles, so each pays the same amount.\n"
         "Each share of the bill: 84 / 2 = $42.\n"
         "Each pays 42 + 6 = $48.\n"
         "Each friend pays \\boxed{48} dollars.",
         "48"),
        ("What is the average of the numbers 37, 41, 45, 49 and 53?",
         "The numbers are symmetric around 45: 37 and 53 are both 8 away, 41 and 49 both 4 "
         "away.\n"
         "The deviations cancel in pairs, so the average is the middle value, 45.\n"
         "The average is \\boxed{45}.",
         "45"),
    ),
    _h(
        "indirect_proof", "Indirect reasoning",
        "Assume a candidate answer, follow its consequences, and rule out every candidate that "
        "contradicts a condition. The candidate that survives is the answer.",
        ("Sara has only nickels and dimes: 12 coins worth 85 cents. How many dimes does she "
         "have?",
         "Suppose she has 6 dimes: 6 x 10 + 6 x 5 = 90 cents, which contradicts 85.\n"
         "Each dime fewer (and nickel more) lowers the value by 5 cents, so 6 is too many.\n"
         "Suppose 5 dimes: 5 x 10 + 7 x 5 = 50 + 35 = 85 cents. No contradiction.\n"
         "She has \\boxed{5} dimes.",
         "5"),
        ("A number between 10 and 20 is odd, is not prime, and is divisible by 5. What is the "
         "number?",
         "Candidates that are odd: 11, 13, 15, 17, 19.\n"
         "Assume it is 11, 13, 17 or 19: each is prime, contradicting the conditions.\n"
         "Only 15 remains, and it is divisible by 5.\n"
         "The number is \\boxed{15}.",
         "15"),
    ),
    _h(
        "induction", "Induction: find the pattern",
        "Work out the first few cases, find the rule that takes one case to the next, check the "
        "rule on another case, then apply it directly to the case asked for.",
        ("A plant is 3 cm tall and grows 4 cm each week. How tall is it after 10 weeks?",
         "Week 0: 3 cm; week 1: 7 cm; week 2: 11 cm.\n"
         "Rule: height after w weeks = 3 + 4w. Check week 2: 3 + 8 = 11, correct.\n"
         "Week 10: 3 + 40 = 43 cm.\n"
         "The plant is \\boxed{43} cm tall.",
         "43"),
        ("A bacteria culture starts with 5 cells and doubles every hour. How many cells are "
         "there after 6 hours?",
         "Hour 0: 5; hour 1: 10; hour 2: 20; hour 3: 40.\n"
         "Rule: cells after h hours = 5 x 2^h. Check hour 3: 5 x 8 = 40, correct.\n"
         "Hour 6: 5 x 64 = 320.\n"
         "There are \\boxed{320} cells.",
         "320"),
    ),
    _h(
        "separate_conditions", "Separate the parts of the condition",
        "Break the condition into its separate clauses, write each on its own line, and "
        "handle them one at a time so that nothing is merged or forgotten.",
        ("A school orders 20 boxes of pencils with 25 pencils in each box. 15% of the pencils "
         "are red and the rest are blue. How many blue pencils are there?",
         "Clause 1: 20 boxes of 25 pencils, so 20 x 25 = 500 pencils.\n"
         "Clause 2: 15% are red, so 0.15 x 500 = 75 red pencils.\n"
         "Clause 3: the rest are blue, so 500 - 75 = 425.\n"
         "There are \\boxed{425} blue pencils.",
         "425"),
        ("Leo earns $15 per hour for the first 40 hours of a week and 1.5 times that rate for "
         "every hour beyond 40. He worked 46 hours. How much did he earn?",
         "Part 1, regular hours: 40 x 15 = $600.\n"
         "Part 2, overtime rate: 1.5 x 15 = $22.50 per hour.\n"
         "Part 3, overtime hours: 46 - 40 = 6, paying 6 x 22.50 = $135.\n"
         "Total: 600 + 135 = $735.\n"
         "Leo earned \\boxed{735} dollars.",
         "735"),
    ),
    _h(
        "notation", "Choose good notation",
        "Pick short, suggestive symbols for the quantities (p for a price, w for a width), "
        "write the relations compactly with them, and keep the notation consistent to the end.",
        ("A coffee costs $3 more than a muffin. Two coffees and three muffins cost $21. How "
         "much does a coffee cost?",
         "Notation: m = price of a muffin, c = price of a coffee, with c = m + 3.\n"
         "2c + 3m = 21 becomes 2(m + 3) + 3m = 21, so 5m + 6 = 21 and m = 3.\n"
         "c = 3 + 3 = 6.\n"
         "A coffee costs \\boxed{6} dollars.",
         "6"),
        ("A rectangle's length is 3 times its width and its perimeter is 64 cm. What is its "
         "area in square centimeters?",
         "Notation: w = width, l = length = 3w, P = perimeter, A = area.\n"
         "P = 2(l + w) = 2(3w + w) = 8w = 64, so w = 8 and l = 24.\n"
         "A = l x w = 24 x 8 = 192.\n"
         "The area is \\boxed{192} square centimeters.",
         "192"),
    ),
)

STAR = Heuristic(
    id=NONE_ID, name="No heuristic",
    description="Solve the problem directly, without a prescribed strategy.",
)
"""The "no heuristic" entry: the STaR arm and plain prompts."""

_BY_ID: dict[str, Heuristic] = {h.id: h for h in CATALOG}


def ids() -> list[str]:
    """Catalog ids, in order."""
    return [h.id for h in CATALOG]


def get(id: str) -> Heuristic:
    """A catalog heuristic (or STAR for "none") by id; KeyError if unknown."""
    if id == NONE_ID:
        return STAR
    try:
        return _BY_ID[id]
    except KeyError:
        raise KeyError(f"unknown heuristic {id!r}; known: {', '.join(_BY_ID)}") from None


def select(hspec: HeuristicsSpec) -> list[Heuristic]:
    """The heuristics a spec selects: catalog ones first (count or ids), then custom ones.

    ``count: n`` takes the first n catalog entries; a count beyond the catalog size is only
    valid when the custom heuristics (always all appended) make up the difference.
    """
    chosen: list[Heuristic] = []
    if hspec.ids:
        for i, hid in enumerate(hspec.ids):
            if hid not in _BY_ID:
                raise ValueError(f"heuristics.ids[{i}]: unknown heuristic {hid!r}; "
                                 f"known: {', '.join(_BY_ID)}")
            if any(h.id == hid for h in chosen):
                raise ValueError(f"heuristics.ids[{i}]: duplicate heuristic {hid!r}")
            chosen.append(_BY_ID[hid])
    else:
        n = hspec.selected_count()
        available = len(CATALOG) + len(hspec.custom)
        if n > available:
            raise ValueError(
                f"heuristics.count is {n} but only {len(CATALOG)} catalog heuristics"
                f" + {len(hspec.custom)} custom are available")
        chosen = list(CATALOG[:n])
    seen = {h.id for h in chosen}
    for i, c in enumerate(hspec.custom):
        if c.id == NONE_ID:
            raise ValueError(f"heuristics.custom[{i}].id: {NONE_ID!r} is reserved")
        if c.id in _BY_ID:
            raise ValueError(f"heuristics.custom[{i}].id: {c.id!r} is a catalog heuristic; "
                             "pick another id")
        if c.id in seen:
            raise ValueError(f"heuristics.custom[{i}].id: duplicate heuristic {c.id!r}")
        seen.add(c.id)
        chosen.append(Heuristic(
            c.id, c.name, c.description,
            tuple(Exemplar(e.question, e.solution, e.answer) for e in c.exemplars)))
    return chosen


def _ask(question: str) -> str:
    return f"{question.strip()}\n\n{ANSWER_REQUEST}"


def plain_messages(question: str, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages with the question only (STaR, SFT prompts, evaluation)."""
    msgs = [{"role": "system", "content": system}] if system else []
    return [*msgs, {"role": "user", "content": _ask(question)}]


def build_messages(
    heuristic: Heuristic,
    question: str,
    n_exemplars: int = 2,
    *,
    system: bool = True,
) -> list[dict[str, str]]:
    """Chat messages: the heuristic's instruction, exemplars as earlier turns, the question.

    With ``system=False`` the instruction is prepended to the first user turn instead (for
    chat templates without a system role). The "none" heuristic gives plain messages.
    """
    if heuristic.id == NONE_ID:
        return plain_messages(question)
    shots: Iterable[Exemplar] = heuristic.exemplars[:max(n_exemplars, 0)]
    turns: list[dict[str, str]] = []
    for ex in shots:
        turns += [{"role": "user", "content": _ask(ex.question)},
                  {"role": "assistant", "content": ex.solution}]
    turns.append({"role": "user", "content": _ask(question)})
    instruction = heuristic.instruction()
    if system:
        return [{"role": "system", "content": instruction}, *turns]
    turns[0] = {"role": "user", "content": f"{instruction}\n\n{turns[0]['content']}"}
    return turns
